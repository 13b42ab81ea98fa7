"""Money parsing on the value formats real exports carry (platform-formats.md 1.3)."""

from __future__ import annotations

from decimal import Decimal

import pandas as pd
import pytest

from pledgeflow.values import MoneyError, is_blank, money_matches, parse_money


@pytest.mark.parametrize(
    ("cell", "project_currency", "amount", "currency"),
    [
        # 2014 export: symbol + amount + ISO code.
        ("$5.00 USD", None, "5.00", "USD"),
        ("$0.00 USD", "EUR", "0.00", "USD"),
        # 2018 SEK export: ISO prefix and a thousands comma.
        ("SEK 1,000.00", None, "1000.00", "SEK"),
        ("SEK 100.00", "USD", "100.00", "SEK"),
        # 2025 GBP export: symbol only.
        ("£253.00", None, "253.00", "GBP"),
        ("£253.00", "USD", "253.00", "GBP"),
        # BackerKit: a plain number means the project's currency.
        ("249.0", "EUR", "249.00", "EUR"),
        ("249.0", None, "249.00", None),
        ("0.0", "USD", "0.00", "USD"),
        # An ISO code beats the symbol beside it and the project currency.
        ("$59 AUD", None, "59.00", "AUD"),
        ("$59 AUD", "USD", "59.00", "AUD"),
        # Prefixed dollar symbols name their currency.
        ("AU$ 25.00", None, "25.00", "AUD"),
        ("AU$ 25.00", "USD", "25.00", "AUD"),
        ("CA$ 20", None, "20.00", "CAD"),
        # Euro formats: decimal comma, dot thousands.
        ("€12,50", None, "12.50", "EUR"),
        ("1.234,56 EUR", None, "1234.56", "EUR"),
        ("EUR 1.234,56", None, "1234.56", "EUR"),
        # A bare `$` is the project's dollar when it has one, else USD.
        ("$109.00", "AUD", "109.00", "AUD"),
        ("$109.00", "CAD", "109.00", "CAD"),
        ("$109.00", None, "109.00", "USD"),
        ("USD 159.00", "AUD", "159.00", "USD"),
        ("$1,234,567.89 USD", None, "1234567.89", "USD"),
        (" $5.00 USD ", None, "5.00", "USD"),
        ("9999999999.99", None, "9999999999.99", None),
    ],
)
def test_parse_money_real_formats(
    cell: str, project_currency: str | None, amount: str, currency: str | None
) -> None:
    parsed_amount, parsed_currency = parse_money(cell, project_currency)
    assert parsed_amount == Decimal(amount)
    assert parsed_amount.as_tuple().exponent == -2  # quantized to cents, like numeric(12,2)
    assert parsed_currency == currency


@pytest.mark.parametrize(
    ("cell", "amount", "currency"),
    [
        ("-$5.00 USD", "-5.00", "USD"),
        ("$-5.00", "-5.00", "USD"),
        ("-249.0", "-249.00", None),
        ("SEK -1,000.00", "-1000.00", "SEK"),
    ],
)
def test_parse_money_negative(cell: str, amount: str, currency: str | None) -> None:
    assert parse_money(cell, None) == (Decimal(amount), currency)


@pytest.mark.parametrize(
    "cell",
    [
        "10000000000.00",
        "$10,000,000,000.00 USD",
        "-10000000000",
        "99999999999999999999999999999999",
    ],
)
def test_parse_money_out_of_numeric_12_2_range(cell: str) -> None:
    with pytest.raises(MoneyError):
        parse_money(cell, "USD")


@pytest.mark.parametrize("cell", ["USD 5.00 EUR", "SEK 100 USD", "EUR1,00GBP"])
def test_parse_money_two_iso_codes_rejected(cell: str) -> None:
    with pytest.raises(MoneyError, match="two currencies"):
        parse_money(cell, None)


@pytest.mark.parametrize(
    "cell",
    ["twelve dollars", "", "   ", "$", "USD", "5.00.00", "1-2", "12abc", "$5 USD extra", "N/A"],
)
def test_parse_money_garbage_rejected(cell: str) -> None:
    with pytest.raises(MoneyError):
        parse_money(cell, "USD")


def test_money_matches_flags_only_bad_cells() -> None:
    cells = pd.Series(
        ["$5.00 USD", "", "  ", None, "twelve", "USD 5 EUR", "10000000000", "£253.00", "249.0"],
        index=[11, 12, 13, 14, 15, 16, 17, 18, 19],
        dtype=object,
    )
    result = money_matches(cells)
    assert result.index.tolist() == cells.index.tolist()
    assert result.tolist() == [True, True, True, True, False, False, False, True, True]


def test_is_blank() -> None:
    cells = pd.Series(["", " \t", None, "x", " 0 "], dtype=object)
    assert is_blank(cells).tolist() == [True, True, True, False, False]


@pytest.mark.parametrize(("cell", "thousands"), [("€1.000", "1000"), ("1.234 EUR", "1234")])
def test_one_dot_group_is_not_silently_rounded(cell: str, thousands: str) -> None:
    try:
        amount, currency = parse_money(cell, None)
    except MoneyError:
        return  # rejecting the ambiguous cell is acceptable
    assert (amount, currency) == (Decimal(thousands), "EUR")
