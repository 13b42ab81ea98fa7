"""Parsing of the money strings that exports carry (dates: `pledgeflow.dates`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

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


class MoneyError(ValueError):
    """A cell that is not a money value."""


def per_distinct(
    cells: pd.Series | np.ndarray, func: Callable[[str], Any], missing: Any, dtype: Any = object
) -> np.ndarray:
    """`func(cell)` for every cell, called once per distinct cell; `missing` where a cell is NA.

    A column repeats a few values many times (amounts, countries, quantities, statuses): one
    hash pass in C (`pandas.factorize`) finds the distinct cells, `func` runs on those only,
    and one take spreads the results back over the column."""
    if isinstance(cells, pd.Series) and arrow_backed(cells):
        # Arrow's dictionary encoding, without first making a Python string of every cell.
        codes, uniques = pd.factorize(cells.array)
        distinct = uniques.tolist()
    else:
        codes, uniques = pd.factorize(np.asarray(cells, dtype=object))
        distinct = list(uniques)
    results = np.empty(len(distinct) + 1, dtype=dtype)
    for position, cell in enumerate(distinct):
        results[position] = func(cell if isinstance(cell, str) else str(cell))
    results[-1] = missing  # factorize codes an NA as -1: the last entry
    return results[codes]


# What `str.strip()` removes: every character `str.isspace` takes (Arrow's own whitespace
# trim follows Unicode's White_Space, which differs from Python's by a few control characters).
PY_WHITESPACE = "".join(chr(code) for code in range(0x110000) if chr(code).isspace())


def arrow_backed(cells: pd.Series) -> bool:
    """Whether a column is text held by Arrow (pandas 3's `str` dtype with pyarrow)."""
    return isinstance(cells.dtype, pd.StringDtype) and cells.dtype.storage == "pyarrow"


def _arrow_text(cells: pd.Series) -> pa.ChunkedArray | pa.Array | None:
    """The Arrow array behind a text column (pandas 3's `str` dtype), or None for another."""
    return pa.array(cells.array) if arrow_backed(cells) else None


def stripped_or_none(cells: pd.Series) -> pd.Series:
    """Each cell stripped as `str.strip()` strips it; missing where that leaves nothing.

    On an Arrow-backed text column one trim kernel in C (about six times faster than a
    comprehension over Python strings); other columns go cell by cell."""
    arrow = _arrow_text(cells)
    if arrow is None:
        stripped = [
            (cell.strip() or None) if isinstance(cell, str) else None
            for cell in cells.to_numpy(dtype=object)
        ]
        return pd.Series(stripped, index=cells.index, dtype="str")
    trimmed = pc.utf8_trim(arrow, characters=PY_WHITESPACE)
    kept = pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, trimmed.type), trimmed)
    return pd.Series(kept, index=cells.index, dtype=cells.dtype)


def is_blank(cells: pd.Series) -> pd.Series:
    """True where a cell is missing or only whitespace."""
    arrow = _arrow_text(cells)
    if arrow is not None:
        trimmed = pc.utf8_trim(arrow, characters=PY_WHITESPACE)
        blank = pc.fill_null(pc.equal(trimmed, ""), True)  # a missing cell is blank
        return pd.Series(blank.to_numpy(zero_copy_only=False), index=cells.index, dtype=bool)
    # One comprehension: cheaper than the `.str` accessor, and than hashing mostly distinct cells.
    blank = [not cell.strip() if isinstance(cell, str) else True for cell in cells.to_numpy(object)]
    return pd.Series(blank, index=cells.index, dtype=bool)


WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")  # ASCII only: `\d` would also take Arabic-Indic digits


def whole_numbers(cells: pd.Series) -> pd.Series:
    """True where a cell is blank or a whole number of at most nine digits (a quantity)."""
    return pd.Series(per_distinct(cells, _quantity, True, bool), index=cells.index)


def _quantity(cell: str) -> bool:
    return not cell.strip() or WHOLE_NUMBER.fullmatch(cell.strip()) is not None


def money_matches(cells: pd.Series) -> pd.Series:
    """True where a cell is blank or a well-formed money value within numeric(12, 2)."""
    return pd.Series(per_distinct(cells, _money_or_blank, True, bool), index=cells.index)


def _money_or_blank(cell: str) -> bool:
    return not cell.strip() or _money_or_none(cell) is not None


def _money_or_none(cell: str) -> tuple[Decimal, str | None] | None:
    return cached_money(cell, None)


@lru_cache(maxsize=65_536)
def cached_money(cell: str, project_currency: str | None) -> tuple[Decimal, str | None] | None:
    """`parse_money` remembered, None where it raises MoneyError: an export repeats a few
    thousand amounts over all its chunks, and the check of a cell and its parse then cost one
    lookup each (Decimals are immutable, so rows may share one)."""
    try:
        return parse_money(cell, project_currency)
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
