"""Pandera models of the canonical frames a chunk becomes.

`SourceRows` checks the mapped cells of each source row; the name of every check is the reason
code a failing cell is rejected with. The other models are the contracts of the frames the
upserts receive.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from pledgeflow.values import date_matches, is_blank, money_matches, whole_numbers

# Reason codes of rejected rows (csv_upload_chunk.errors["rejected"][*]["code"]).
REASON_CODES: dict[str, str] = {
    "missing_key": "the pledge key (e.g. Backer Number) is blank",
    "missing_email": "the email is blank",
    "invalid_email": "the email has no @, contains spaces, or is over 320 characters",
    "invalid_money": "not a number after removing symbols, codes and thousands separators, "
    "names two currencies, or exceeds numeric(12,2)",
    "invalid_date": "not a date in any accepted format",
    "invalid_quantity": "an add-on or item quantity that is not a whole number >= 0",
    "short_record": "the record has fewer fields than the header",
    "long_record": "the record has non-blank fields beyond the last header",
    "invalid_character": "a cell holds a NUL character, which no text column can store",
    "cell_too_large": "a cell is longer than PLEDGEFLOW_MAX_CELL_CHARS characters",
}

# The columns the rejected-row report (`pledgeflow errors --csv`) puts before a row's original
# cells. A row with several failing cells lists each in `column`, `code` and `message`, in the
# same order, joined by REPORT_SEPARATOR.
REPORT_COLUMNS = ("row_number", "column", "code", "message")
REPORT_SEPARATOR = "; "


class SourceRows(pa.DataFrameModel):
    """One row per source record, canonical fields as text; index is the file's data-row number."""

    pledge_key: Series[str]
    email: Series[str]
    amount: Series[str]
    shipping_amount: Series[str]
    reward_minimum: Series[str]
    pledged_at: Series[str]
    responded_at: Series[str]

    class Config:
        strict = False

    @pa.check("pledge_key", name="missing_key")
    def _key_present(cls, cells: Series[str]) -> pd.Series:
        return ~is_blank(cells)

    @pa.check("email", name="missing_email")
    def _email_present(cls, cells: Series[str]) -> pd.Series:
        return ~is_blank(cells)

    @pa.check("email", name="invalid_email")
    def _email_shape(cls, cells: Series[str]) -> pd.Series:
        email = cells.str.strip()
        return is_blank(cells) | (
            email.str.fullmatch(r"[^@\s]+@[^@\s]+") & (email.str.len() <= 320)
        )

    @pa.check("amount", "shipping_amount", "reward_minimum", name="invalid_money")
    def _money(cls, cells: Series[str]) -> pd.Series:
        return money_matches(cells)

    @pa.check("pledged_at", "responded_at", name="invalid_date")
    def _date(cls, cells: Series[str]) -> pd.Series:
        return date_matches(cells)


class QuantityCells(pa.DataFrameModel):
    """Add-on and item quantity cells in long form: one row per (source row, column)."""

    row: Series[int]
    header: Series[str]
    value: Series[str]

    @pa.check("value", name="invalid_quantity")
    def _whole_number(cls, cells: Series[str]) -> pd.Series:
        return whole_numbers(cells)


class BackerFrame(pa.DataFrameModel):
    """Backers of a chunk, one per email (the latest row's details)."""

    email: Series[str] = pa.Field(unique=True, str_length={"min_value": 3})
    name: Series[str] = pa.Field(nullable=True)
    phone: Series[str] = pa.Field(nullable=True)
    country: Series[str] = pa.Field(nullable=True)
    external_id: Series[str] = pa.Field(nullable=True)
    source_row: Series[int] = pa.Field(ge=1)


class ProductFrame(pa.DataFrameModel):
    """Products a chunk references, one per name."""

    name: Series[str] = pa.Field(unique=True)
    kind: Series[str] = pa.Field(isin=["reward", "addon", "item"])
    external_id: Series[str] = pa.Field(nullable=True)
    price: Series[object] = pa.Field(nullable=True)
    currency: Series[str] = pa.Field(nullable=True, str_length=3)


class PledgeFrame(pa.DataFrameModel):
    """Pledges of a chunk, one per pledge key (the latest row wins)."""

    pledge_key: Series[str] = pa.Field(unique=True)
    email: Series[str]
    product_name: Series[str] = pa.Field(nullable=True)
    amount: Series[object] = pa.Field(nullable=True)
    shipping_amount: Series[object] = pa.Field(nullable=True)
    currency: Series[str] = pa.Field(nullable=True, str_length=3)
    status: Series[str] = pa.Field(nullable=True)
    pledged_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"}
    )
    source_row: Series[int] = pa.Field(ge=1)


class SurveyFrame(pa.DataFrameModel):
    """One survey per pledge: shipping address and every unmapped source value."""

    pledge_key: Series[str] = pa.Field(unique=True)
    responded_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"}
    )
    answers: Series[object]


class InventoryFrame(pa.DataFrameModel):
    """Quantities above zero owed to each pledge, per product."""

    pledge_key: Series[str]
    product_name: Series[str]
    quantity: Series[int] = pa.Field(ge=1)

    class Config:
        unique = ["pledge_key", "product_name"]
