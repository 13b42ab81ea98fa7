"""Turn a chunk's `{headers, rows}` into validated canonical frames and rejected-row records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from pledgeflow.settings import get_settings
from pledgeflow.values import parse_dates, parse_money
from schemas.frames import (
    REASON_CODES,
    BackerFrame,
    InventoryFrame,
    PledgeFrame,
    ProductFrame,
    QuantityCells,
    SourceRows,
    SurveyFrame,
)
from schemas.layout import (
    CANONICAL_FIELDS,
    DATE_FIELDS,
    EMAIL,
    MONEY_FIELDS,
    PLEDGE_KEY,
    SURVEY_TEXT_FIELDS,
    Layout,
)

KIND_PRECEDENCE = {"reward": 0, "addon": 1, "item": 2}


@dataclass
class ChunkFrames:
    """What one chunk holds once mapped and validated, ready for the upserts."""

    backers: pd.DataFrame
    products: pd.DataFrame
    pledges: pd.DataFrame
    surveys: pd.DataFrame
    inventory: pd.DataFrame
    rejected: list[dict[str, Any]] = field(default_factory=list)
    imported_rows: int = 0
    rejected_rows: int = 0


def rejection(row: int, column: str, value: object, code: str) -> dict[str, Any]:
    """One entry of `errors["rejected"]`, in the shape DESIGN.md fixes."""
    return {
        "row": int(row),
        "column": column,
        "value": "" if value is None else str(value),
        "code": code,
        "message": REASON_CODES[code],
    }


def _unstorable_cell(cells: Sequence[str], max_chars: int) -> tuple[int, str]:
    """The first cell no column can store (a NUL character, or over the size limit)."""
    for index, cell in enumerate(cells):
        if "\x00" in cell:
            return index, "invalid_character"
        if len(cell) > max_chars:
            return index, "cell_too_large"
    raise ValueError("no unstorable cell in this row")


def _text_cells(record: Sequence[object]) -> tuple[Sequence[str], str]:
    """A row's cells as text, and joined for the one-pass checks of `build_frames`.

    A web app's JSON may hold numbers or nulls, or a row that is a string or an object (whose
    characters or keys then count as cells, and the row is rejected on its own)."""
    if isinstance(record, list | tuple):
        try:
            return record, "".join(record)  # one pass in C when every cell is text
        except TypeError:
            pass
    cells = ["" if cell is None else str(cell) for cell in record]
    return cells, "".join(cells)


def build_frames(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    first_row: int,
    layout: Layout,
    project_currency: str | None,
    *,
    max_cell_chars: int | None = None,
) -> ChunkFrames:
    """Map, validate and de-duplicate one chunk; every row ends imported or rejected."""
    max_cell_chars = max_cell_chars or get_settings().max_cell_chars
    width = len(headers)
    rejected: list[dict[str, Any]] = []
    kept: list[Sequence[str]] = []
    kept_rows: list[int] = []
    for offset, record in enumerate(rows):
        row_number = first_row + offset
        cells, joined = _text_cells(record)
        if len(cells) < width:
            rejected.append(rejection(row_number, headers[len(cells)], "", "short_record"))
            continue
        if len(cells) > width:
            extra = [(i, c) for i, c in enumerate(cells[width:], width + 1) if c.strip()]
            if extra:
                position, value = extra[0]
                rejected.append(rejection(row_number, f"field {position}", value, "long_record"))
                continue
            cells = cells[:width]
        # One pass in C over the whole row first; the cell-by-cell search only for a bad row.
        if "\x00" in joined or max(map(len, cells), default=0) > max_cell_chars:
            index, code = _unstorable_cell(cells, max_cell_chars)
            value = cells[index][:200] if code == "cell_too_large" else cells[index]
            rejected.append(rejection(row_number, headers[index], value.replace("\x00", ""), code))
            continue
        kept.append(cells)
        kept_rows.append(row_number)

    raw = pd.DataFrame(kept, index=pd.Index(kept_rows, dtype="int64"), columns=range(width))
    raw = raw.astype("str") if kept else raw
    source = pd.DataFrame(
        {
            name: raw[layout.fields[name]] if name in layout.fields else ""
            for name in CANONICAL_FIELDS
        },
        index=raw.index,
    ).astype("str")
    if layout.key_from_email:
        source[PLEDGE_KEY] = source[EMAIL]
    rejected += _cell_failures(source, layout)
    quantities = _quantity_cells(raw, layout)
    rejected += _quantity_failures(quantities)

    bad_rows = {r["row"] for r in rejected}
    valid = source[~source.index.isin(bad_rows)]
    quantities = quantities[~quantities["row"].isin(bad_rows)]
    rejected.sort(key=lambda r: (r["row"], r["column"]))
    named = _named_items(raw.loc[valid.index], layout)
    frames = _canonical_frames(
        valid, raw.loc[valid.index], quantities, named, layout, project_currency
    )
    frames.rejected = rejected
    frames.imported_rows = len(valid)
    frames.rejected_rows = len(bad_rows)
    return frames


def _cell_failures(source: pd.DataFrame, layout: Layout) -> list[dict[str, Any]]:
    try:
        SourceRows.validate(source, lazy=True)
    except pa.errors.SchemaErrors as exc:
        cases = exc.failure_cases
        out = []
        for case in cases.itertuples(index=False):
            if case.check not in REASON_CODES or pd.isna(case.index):
                raise
            if layout.key_from_email and case.check == "missing_key":
                continue  # the key is the email, whose blank cell is `missing_email`
            column = headers_of(layout, str(case.column))
            out.append(rejection(int(case.index), column, case.failure_case, str(case.check)))
        return out
    return []


def headers_of(layout: Layout, field_name: str) -> str:
    """The source header a canonical field was read from."""
    return layout.headers[layout.fields[field_name]].replace("\ufeff", "").strip()


def _named_items(raw: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    """One row per non-blank `Item Name` cell: (source row, item name, its SKU or None)."""
    parts = [
        pd.DataFrame(
            {
                "row": raw.index.astype("int64"),
                "product": raw[name_at].str.strip().to_numpy(dtype=object),
                "sku": (
                    raw[sku_at].str.strip().to_numpy(dtype=object) if sku_at is not None else None
                ),
            }
        )
        for name_at, sku_at in layout.item_name_groups
    ]
    if not parts:
        return pd.DataFrame(
            {
                "row": pd.Series(dtype="int64"),
                "product": pd.Series(dtype=object),
                "sku": pd.Series(dtype=object),
            }
        )
    cells = pd.concat(parts, ignore_index=True)
    cells = cells[cells["product"] != ""]
    return cells.assign(sku=cells["sku"].where(cells["sku"].fillna("") != "", None))


def _quantity_cells(raw: pd.DataFrame, layout: Layout) -> pd.DataFrame:
    columns = [(i, name) for i, _, name in layout.addon_columns] + list(layout.item_columns)
    parts = [
        pd.DataFrame(
            {
                "row": raw.index.astype("int64"),
                "column": index,
                "header": layout.headers[index].strip(),
                "product": name,
                "value": raw[index].to_numpy(dtype=object),
            }
        )
        for index, name in columns
    ]
    if not parts:
        return pd.DataFrame(
            {
                "row": pd.Series(dtype="int64"),
                "column": pd.Series(dtype="int64"),
                "header": pd.Series(dtype="str"),
                "product": pd.Series(dtype="str"),
                "value": pd.Series(dtype="str"),
            }
        )
    cells = pd.concat(parts, ignore_index=True)
    return cells.astype({"header": "str", "product": "str", "value": "str"})


def _quantity_failures(cells: pd.DataFrame) -> list[dict[str, Any]]:
    try:
        QuantityCells.validate(cells, lazy=True)
    except pa.errors.SchemaErrors as exc:
        failed = exc.failure_cases["index"].dropna().astype("int64")
        return [
            rejection(int(c.row), str(c.header), c.value, "invalid_quantity")
            for c in cells.loc[failed].itertuples(index=False)
        ]
    return []


def _blank_to_none(cells: pd.Series) -> pd.Series:
    # A comprehension over the values is several times faster than the `.str` accessor on
    # Python-backed strings, and this runs on every canonical column of every chunk.
    stripped = [cell.strip() or None for cell in cells.to_numpy(dtype=object)]
    return pd.Series(stripped, index=cells.index, dtype="str")


def _money_column(cells: pd.Series, project_currency: str | None) -> tuple[pd.Series, pd.Series]:
    # A column repeats a few amounts many times: parse each distinct cell once.
    # SourceRows rejected the rows whose cells do not parse (MoneyError) already.
    parsed: dict[str, tuple[Decimal | None, str | None]] = {
        cell: parse_money(cell, project_currency) if cell.strip() else (None, None)
        for cell in cells.unique()
    }
    pairs = [parsed[cell] for cell in cells.to_numpy(dtype=object)]
    amounts = [amount for amount, _ in pairs]
    currencies = [currency for _, currency in pairs]
    return (
        pd.Series(amounts, index=cells.index, dtype=object),
        pd.Series(currencies, index=cells.index, dtype=object),
    )


def _canonical_frames(
    valid: pd.DataFrame,
    raw: pd.DataFrame,
    quantities: pd.DataFrame,
    named: pd.DataFrame,
    layout: Layout,
    project_currency: str | None,
) -> ChunkFrames:
    text = {name: _blank_to_none(valid[name]) for name in valid.columns}
    for name, fallback in layout.fallbacks:
        text[name] = text[name].fillna(text[fallback])
    if layout.title_separator:
        title = text["reward_title"].str.split(layout.title_separator, n=1, regex=False).str[0]
        text["reward_title"] = _blank_to_none(title.fillna(""))
    money = {name: _money_column(valid[name], project_currency) for name in MONEY_FIELDS}
    dates = {name: parse_dates(valid[name]) for name in DATE_FIELDS}
    rows = pd.Series(valid.index, index=valid.index, dtype="int64")
    email = valid["email"].str.strip().str.lower()

    backers = pd.DataFrame(
        {
            "email": email,
            "name": text["backer_name"],
            "phone": text["phone"],
            "country": text["country"].fillna(text["shipping_country_code"]),
            "external_id": text["backer_external_id"],
            "source_row": rows,
        }
    ).drop_duplicates("email", keep="last")

    reward_name, reward_products = _rewards(text, money["reward_minimum"])
    pledge_currency = money["amount"][1].fillna(money["shipping_amount"][1])
    pledges = pd.DataFrame(
        {
            "pledge_key": email if layout.key_from_email else valid["pledge_key"].str.strip(),
            "email": email,
            "product_name": reward_name.astype("str"),  # str even when the chunk is empty
            "amount": money["amount"][0],
            "shipping_amount": money["shipping_amount"][0],
            "currency": pledge_currency.fillna(project_currency or pd.NA).astype("str"),
            "status": text["status"].str.lower(),
            "pledged_at": dates["pledged_at"],
            "source_row": rows,
        }
    ).drop_duplicates("pledge_key", keep="last")

    winners = pledges["source_row"]
    answer_keys = [key for _, key in layout.answer_columns]
    answer_cells = raw.loc[winners, [i for i, _ in layout.answer_columns]].to_numpy(dtype=object)
    answers = [
        {key: v for key, cell in zip(answer_keys, cells, strict=True) if (v := cell.strip())}
        for cells in answer_cells
    ]
    surveys = pd.DataFrame(
        {
            "pledge_key": pledges["pledge_key"],
            "responded_at": dates["responded_at"].loc[winners],
            **{name: text[name].loc[winners] for name in SURVEY_TEXT_FIELDS},
            "answers": pd.Series(answers, index=winners.index, dtype=object),
        }
    )

    products = _products(reward_products, layout, named)
    inventory = _inventory(quantities, named, pledges)
    return ChunkFrames(
        backers=BackerFrame.validate(backers),
        products=ProductFrame.validate(products),
        pledges=PledgeFrame.validate(pledges),
        surveys=SurveyFrame.validate(surveys),
        inventory=InventoryFrame.validate(inventory),
    )


def _rewards(
    text: dict[str, pd.Series], minimum: tuple[pd.Series, pd.Series]
) -> tuple[pd.Series, pd.DataFrame]:
    """Name each row's reward tier: its title, else `Reward <id>`, else `Reward <minimum>`."""
    price, currency = minimum
    by_minimum = pd.Series(
        [
            f"Reward {p} {c}".rstrip() if p is not None and p > 0 else None
            for p, c in zip(price, currency.fillna(""), strict=True)
        ],
        index=price.index,
        dtype=object,
    )
    by_id = ("Reward " + text["reward_id"]).where(text["reward_id"].notna(), None)
    name = text["reward_title"].fillna(by_id).fillna(by_minimum).astype("str")
    rewards = pd.DataFrame(
        {
            "name": name,
            "kind": "reward",
            "external_id": text["reward_id"],
            "price": price,
            "currency": currency,
        }
    )
    rewards = rewards[rewards["name"].notna()].drop_duplicates("name", keep="last")
    return name, rewards


def _products(rewards: pd.DataFrame, layout: Layout, named: pd.DataFrame) -> pd.DataFrame:
    # A named item takes the first SKU seen with its name.
    skus = named.sort_values("row", kind="stable").groupby("product", sort=True)["sku"].first()
    extra = (
        [
            {"name": name, "kind": "addon", "external_id": ext, "price": None, "currency": None}
            for _, ext, name in layout.addon_columns
        ]
        + [
            {"name": name, "kind": "item", "external_id": None, "price": None, "currency": None}
            for _, name in layout.item_columns
        ]
        + [
            {
                "name": name,
                "kind": "item",
                "external_id": None if pd.isna(sku) else sku,
                "price": None,
                "currency": None,
            }
            for name, sku in skus.items()
        ]
    )
    products = pd.concat([rewards, pd.DataFrame(extra, columns=rewards.columns)])
    products = products.assign(rank=products["kind"].map(KIND_PRECEDENCE))
    products = products.sort_values(["name", "rank"], kind="stable").drop_duplicates("name")
    products = products.drop(columns="rank").reset_index(drop=True)
    products["price"] = products["price"].astype(object).where(products["price"].notna(), None)
    return products.astype({"name": "str", "kind": "str", "external_id": "str", "currency": "str"})


def _inventory(
    quantities: pd.DataFrame, named: pd.DataFrame, pledges: pd.DataFrame
) -> pd.DataFrame:
    """Quantities above zero of each winning row; an add-on and an item of the same name
    count the same goods, so the line takes the larger of the two. Named items (Indiegogo)
    count one unit per `Item Name` cell, summed where a row names an item twice."""
    keys = pd.Series(pledges["pledge_key"].to_numpy(), index=pledges["source_row"].to_numpy())
    cells = quantities[quantities["row"].isin(keys.index)]
    # A quantity column holds a handful of distinct cells: convert each once.
    values = cells["value"]
    qty = values.map({cell: int(cell.strip() or "0") for cell in values.unique()})
    named = named[named["row"].isin(keys.index)]
    units = named.groupby(["row", "product"], sort=False).size()
    lines = pd.DataFrame(
        {
            "pledge_key": np.concatenate(
                [
                    keys.loc[cells["row"]].to_numpy(dtype=object),
                    keys.loc[units.index.get_level_values("row")].to_numpy(dtype=object),
                ]
            ),
            "product_name": np.concatenate(
                [
                    cells["product"].to_numpy(dtype=object),
                    units.index.get_level_values("product").to_numpy(dtype=object),
                ]
            ),
            "quantity": np.concatenate(
                [qty.to_numpy(dtype="int64"), units.to_numpy(dtype="int64")]
            ),
        }
    )
    owed = lines[lines["quantity"] > 0].groupby(["pledge_key", "product_name"], sort=True)
    return (
        owed["quantity"]
        .max()
        .reset_index()
        .astype({"pledge_key": "str", "product_name": "str", "quantity": "int64"})
    )
