"""Parsing of the money and date strings that exports carry, vectorized over a column."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import pandas as pd

# A money cell: optional ISO code or symbol before and/or after a number that may carry
# thousands separators (`$5.00 USD`, `SEK 1,000.00`, `£253.00`, `AU$ 25.00`, `249.0`).
MONEY_PATTERN = re.compile(
    r"""^\s*(?P<sign1>-)?\s*
    (?P<prefix>[A-Z]{3}(?![A-Z])|[A-Z]{1,3}\$|[$£€¥₹₩₽₺₪₱฿]|kr\.?|zł|Fr\.?)?\s*
    (?P<sign2>-)?\s*
    (?P<number>\d{1,3}(?:[,.\u00a0\u202f' ]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?|[.,]\d+)
    \s*(?P<suffix>[A-Z]{3}|[$£€¥]|kr\.?|zł)?\s*$""",
    re.VERBOSE,
)
MONEY_LIMIT = Decimal("9999999999.99")  # numeric(12, 2)

SYMBOL_CURRENCIES: dict[str, tuple[str, ...]] = {
    "$": ("USD", "AUD", "CAD", "NZD", "HKD", "SGD", "MXN"),
    "£": ("GBP",),
    "€": ("EUR",),
    "¥": ("JPY", "CNY"),
    "₹": ("INR",),
    "₩": ("KRW",),
    "₽": ("RUB",),
    "₺": ("TRY",),
    "₪": ("ILS",),
    "₱": ("PHP",),
    "฿": ("THB",),
    "kr": ("SEK", "NOK", "DKK", "ISK"),
    "zł": ("PLN",),
    "fr": ("CHF",),
    "au$": ("AUD",),
    "a$": ("AUD",),
    "ca$": ("CAD",),
    "c$": ("CAD",),
    "us$": ("USD",),
    "nz$": ("NZD",),
    "hk$": ("HKD",),
    "s$": ("SGD",),
    "sg$": ("SGD",),
    "mx$": ("MXN",),
}

# Formats tried in order; each is parsed vectorized over the cells still unparsed.
DATE_FORMATS = (
    "%Y/%m/%d, %H:%M",
    "%Y/%m/%d, %H:%M:%S",
    "%Y-%m-%d %H:%M:%S %z",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y/%m/%d %H:%M",
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%m/%d/%Y %H:%M",
    "%m/%d/%Y",
    "%m/%d/%y",
    "ISO8601",
)


class MoneyError(ValueError):
    """A cell that is not a money value."""


def is_blank(cells: pd.Series) -> pd.Series:
    """True where a cell is missing or only whitespace."""
    return cells.isna() | (cells.astype("str").str.strip() == "")


WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII only: `\d` would also take Arabic-Indic digits


def whole_numbers(cells: pd.Series) -> pd.Series:
    """True where a cell is blank or a whole number of at most nine digits (a quantity)."""
    # Quantity columns repeat a handful of cells ("", "0", "1", ...): test each once.
    valid = {
        cell: not cell.strip() or WHOLE_NUMBER.fullmatch(cell.strip()) is not None
        for cell in cells.dropna().unique()
    }
    return cells.map(valid).fillna(True).astype(bool)


def money_matches(cells: pd.Series) -> pd.Series:
    """True where a cell is blank or a well-formed money value within numeric(12, 2)."""
    # A column repeats a few amounts many times: parse each distinct cell once.
    valid = {cell: _money_or_none(cell) is not None for cell in cells.dropna().unique()}
    return is_blank(cells) | cells.map(valid).fillna(False).astype(bool)


def _money_or_none(cell: str) -> tuple[Decimal, str | None] | None:
    try:
        return parse_money(cell, None)
    except MoneyError:
        return None


def parse_money(cell: str, project_currency: str | None) -> tuple[Decimal, str | None]:
    """Parse one money cell into (amount, currency); the cell's own code or symbol wins."""
    match = MONEY_PATTERN.match(cell)
    if match is None:
        raise MoneyError(f"not a money value: {cell!r}")
    amount = _to_decimal(match.group("number"))
    if match.group("sign1") or match.group("sign2"):
        amount = -amount
    if abs(amount) > MONEY_LIMIT:
        raise MoneyError(f"money value out of range: {cell!r}")
    tokens = [t for t in (match.group("prefix"), match.group("suffix")) if t]
    codes = {t for t in tokens if re.fullmatch(r"[A-Z]{3}", t)}
    if len(codes) > 1:
        raise MoneyError(f"money value names two currencies: {cell!r}")
    if codes:  # an ISO code beats a symbol beside it (`$59 AUD` is AUD)
        return amount, codes.pop()
    if tokens:
        return amount, _currency_of_symbol(tokens[0], project_currency)
    return amount, project_currency


def _currency_of_symbol(token: str, project_currency: str | None) -> str:
    candidates = SYMBOL_CURRENCIES.get(token.rstrip(".").casefold())
    if candidates is None:
        raise MoneyError(f"unknown currency symbol {token!r}")
    if project_currency in candidates:
        return project_currency
    return candidates[0]


def _to_decimal(number: str) -> Decimal:
    digits = re.sub(r"[\u00a0\u202f' ]", "", number)
    if "," in digits and "." in digits:
        decimal_mark = "," if digits.rfind(",") > digits.rfind(".") else "."
        thousands = "." if decimal_mark == "," else ","
        digits = digits.replace(thousands, "").replace(decimal_mark, ".")
    elif "," in digits:
        # `1,000` and `1,000,000` group thousands; `12,50` is a decimal comma.
        digits = (
            digits.replace(",", "")
            if re.fullmatch(r"\d{1,3}(,\d{3})+", digits)
            else digits.replace(",", ".")
        )
    elif re.fullmatch(r"\d{1,3}(\.\d{3})+", digits):
        # `1.000.000` and `€1.000` group thousands: no money value has three decimals.
        digits = digits.replace(".", "")
    if "." in digits and len(digits.rsplit(".", 1)[1]) > 2:
        raise MoneyError(f"more than two decimals: {number!r}")
    try:
        return Decimal(digits).quantize(Decimal("0.01"))
    except InvalidOperation as exc:
        raise MoneyError(f"not a number: {number!r}") from exc


def parse_dates(cells: pd.Series) -> pd.Series:
    """Parse date cells to UTC timestamps; blanks and unparseable cells become NaT."""
    result = pd.Series(pd.NaT, index=cells.index, dtype="datetime64[us, UTC]")
    remaining = cells[~is_blank(cells)].astype("str").str.strip()
    # A cell without a digit is no date in any format: spare it the dozen attempts below.
    remaining = remaining[remaining.str.contains(r"\d", regex=True)]
    for fmt in DATE_FORMATS:
        if remaining.empty:
            break
        parsed = pd.to_datetime(remaining, format=fmt, errors="coerce", utc=True)
        hit = parsed.notna()
        # Aligned on the index: one vectorized fill, not a lookup per parsed label.
        result = result.fillna(parsed[hit].astype(result.dtype))
        remaining = remaining[~hit]
    return result


def date_matches(cells: pd.Series) -> pd.Series:
    """True where a cell is blank or a date in one of the accepted formats."""
    return is_blank(cells) | parse_dates(cells).notna()
