"""Pandera models of the canonical frames a chunk becomes.

`SourceRows` checks the mapped cells of each source row; the name of every check is the reason
code a failing cell is rejected with. Dates are checked where they are parsed, in the style
decided for their column (`pledgeflow.dates`), not cell by cell here. The other models are
the contracts of the frames the upserts receive.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera import dtypes
from pandera.engines import pandas_engine
from pandera.typing import Series

from pledgeflow.dates import ACCEPTED_SHORT
from pledgeflow.values import is_blank, money_matches, whole_numbers

# Reason codes of rejected rows (csv_upload_chunk.errors["rejected"][*]["code"]).
REASON_CODES: dict[str, str] = {
    "missing_key": "the pledge key (e.g. Backer Number) is blank",
    "missing_email": "the email is blank",
    # Checked by email-validator (pledgeflow.value_rules): the message is the library's reason.
    "invalid_email": "email-validator refuses the address (its reason is the message)",
    "invalid_money": "not a money value: expected a number with an optional currency symbol "
    "and/or ISO code ($5.00 USD, SEK 1,000.00, £253.00, AU$ 25, 249.0), thousands separators "
    "allowed, at most two decimals, within numeric(12,2), naming one currency",
    "invalid_date": f"not a date in the style of its column (accepted: {ACCEPTED_SHORT})",
    "invalid_quantity": "an add-on or item quantity that is not a whole number >= 0",
    "short_record": "the record has fewer fields than the header",
    "long_record": "the record has non-blank fields beyond the last header",
    "invalid_character": "a cell holds a NUL character, which no text column can store",
    "cell_too_large": "a cell is longer than PLEDGEFLOW_MAX_CELL_CHARS characters",
}


@pandas_engine.Engine.register_dtype
@dtypes.immutable(init=True)
class Text(pandas_engine.STRING):
    """Text cells: what `Series[str]` resolves to (pandas' `str` dtype), with its verdict on a
    column that passes given as one True.

    pandera's own answers a column of the right dtype with one True per cell, which it then
    reduces and turns into an (empty) table of failure cases: a 10,000-cell column took 1.1 ms
    to validate, 0.35 ms with this, and a chunk validates about 30 text columns, some of them
    70,000 cells long. A failing verdict stays as pandera gave it (same errors, same cases)."""

    def check(self, pandera_dtype: Any, data_container: Any = None) -> Any:
        verdict: Any = super().check(pandera_dtype, data_container)
        if not isinstance(verdict, bool) and bool(np.all(verdict)):
            return True
        return verdict


class SourceRows(pa.DataFrameModel):
    """One row per source record, canonical fields as text; index is the file's data-row number."""

    pledge_key: Series[Text]
    email: Series[Text]
    amount: Series[Text]
    shipping_amount: Series[Text]
    reward_minimum: Series[Text]
    pledged_at: Series[Text]
    responded_at: Series[Text]

    class Config:
        strict = False

    @pa.check("pledge_key", name="missing_key")
    def _key_present(cls, cells: Series[str]) -> pd.Series:
        return ~is_blank(cells)

    @pa.check("email", name="missing_email")
    def _email_present(cls, cells: Series[str]) -> pd.Series:
        return ~is_blank(cells)

    @pa.check("amount", "shipping_amount", "reward_minimum", name="invalid_money")
    def _money(cls, cells: Series[str]) -> pd.Series:
        return money_matches(cells)


class QuantityCells(pa.DataFrameModel):
    """Add-on and item quantity cells in long form: one row per (source row, column)."""

    row: Series[int]
    header: Series[Text]
    value: Series[Text]

    @pa.check("value", name="invalid_quantity")
    def _whole_number(cls, cells: Series[str]) -> pd.Series:
        return whole_numbers(cells)


class BackerFrame(pa.DataFrameModel):
    """Backers of a chunk, one per email (the latest row's details)."""

    email: Series[Text] = pa.Field(unique=True, str_length={"min_value": 3})
    name: Series[Text] = pa.Field(nullable=True)
    phone: Series[Text] = pa.Field(nullable=True)
    country: Series[Text] = pa.Field(nullable=True)
    external_id: Series[Text] = pa.Field(nullable=True)
    source_row: Series[int] = pa.Field(ge=1)


class ProductFrame(pa.DataFrameModel):
    """Products a chunk references, one per (kind, product_key): the platform's id, else the
    trimmed name."""

    kind: Series[Text] = pa.Field(isin=["reward", "addon", "item"])
    product_key: Series[Text]
    name: Series[Text]
    external_id: Series[Text] = pa.Field(nullable=True)
    price: Series[object] = pa.Field(nullable=True)
    currency: Series[Text] = pa.Field(nullable=True, str_length=3)

    class Config:
        unique = ["kind", "product_key"]


class PledgeFrame(pa.DataFrameModel):
    """Pledges of a chunk, one per pledge key (the latest row wins)."""

    pledge_key: Series[Text] = pa.Field(unique=True)
    email: Series[Text]
    # The product_key of the pledge's reward tier (a `reward` product), if it has one.
    product_key: Series[Text] = pa.Field(nullable=True)
    amount: Series[object] = pa.Field(nullable=True)
    shipping_amount: Series[object] = pa.Field(nullable=True)
    currency: Series[Text] = pa.Field(nullable=True, str_length=3)
    status: Series[Text] = pa.Field(nullable=True)
    pledged_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"}
    )
    source_row: Series[int] = pa.Field(ge=1)


class SurveyFrame(pa.DataFrameModel):
    """One survey per pledge: shipping address and every unmapped source value."""

    pledge_key: Series[Text] = pa.Field(unique=True)
    responded_at: Series[pd.DatetimeTZDtype] = pa.Field(
        nullable=True, dtype_kwargs={"unit": "us", "tz": "UTC"}
    )
    answers: Series[object]


class InventoryFrame(pa.DataFrameModel):
    """Quantities above zero owed to each pledge, per product."""

    pledge_key: Series[Text]
    product_kind: Series[Text] = pa.Field(isin=["addon", "item"])
    product_key: Series[Text]
    quantity: Series[int] = pa.Field(ge=1)

    class Config:
        unique = ["pledge_key", "product_kind", "product_key"]
