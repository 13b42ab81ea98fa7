"""Turn a chunk's `{headers, rows}` into validated canonical frames and rejected-row records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pyarrow import array as pa_array
from pyarrow import large_string

from pledgeflow.dates import (
    DATE_DTYPE,
    DateColumn,
    infer_date_column,
    invalid_date_message,
    parse_date_column,
)
from pledgeflow.settings import get_settings
from pledgeflow.value_rules import (
    ValueWarnings,
    apply_countries,
    check_emails,
    clean_cells,
    phones,
    rows_needing_cell_rules,
)
from pledgeflow.values import (
    cached_money,
    is_blank,
    parse_money,
    per_distinct,
    stripped_or_none,
)
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
    # What the value rules changed or could not (`ValueWarnings.as_list`).
    warnings: list[dict[str, Any]] = field(default_factory=list)


def rejection(
    row: int, column: str, value: object, code: str, message: str | None = None
) -> dict[str, Any]:
    """One entry of `errors["rejected"]`, in the shape DESIGN.md fixes; the message is the
    code's, unless the library that refused the value said why."""
    return {
        "row": int(row),
        "column": column,
        "value": "" if value is None else str(value),
        "code": code,
        "message": message or REASON_CODES[code],
    }


def rows_by_code(rejected: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Rejected rows per reason code: a row with two bad dates counts once under invalid_date,
    a row with a bad date and a bad amount once under each."""
    return dict(Counter(code for _, code in {(r["row"], r["code"]) for r in rejected}))


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


def row_keys(layout: Layout, record: object) -> tuple[Sequence[str], str, str] | None:
    """A source row's cells as text, pledge key and email, normalized as `build_frames` keys
    them; None for a row it rejects whatever its cells hold (too short, or not a list)."""
    if not isinstance(record, list | tuple):
        return None
    cells, _ = _text_cells(record)
    email_at = layout.fields.get(EMAIL)
    key_at = email_at if layout.key_from_email else layout.fields.get(PLEDGE_KEY)
    if email_at is None or key_at is None or len(cells) < len(layout.headers):
        return None
    email = cells[email_at].strip().lower()
    return cells, (email if layout.key_from_email else cells[key_at].strip()), email


@dataclass
class _Checked:
    """A chunk's rows after the row checks: what `build_frames` maps, and what it rejects."""

    raw: pd.DataFrame
    source: pd.DataFrame
    rejected: list[dict[str, Any]]
    warnings: ValueWarnings
    parsed_dates: dict[str, pd.Series]
    quantities: pd.DataFrame


def build_frames(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    first_row: int,
    layout: Layout,
    project_currency: str | None,
    *,
    max_cell_chars: int | None = None,
    dates: Mapping[str, DateColumn] | None = None,
    row_numbers: Sequence[int] | None = None,
) -> ChunkFrames:
    """Map, validate and de-duplicate one chunk; every row ends imported or rejected.

    `dates` holds the style decided for each date field over the whole upload; a field without
    one takes the style its cells in this chunk show. Rows are numbered from `first_row`, or by
    `row_numbers` (one per row) when given.
    """
    checked = _check_rows(headers, rows, first_row, layout, max_cell_chars, dates, row_numbers)
    source, rejected, quantities = checked.source, checked.rejected, checked.quantities
    bad_rows = {r["row"] for r in rejected}
    valid = source[~source.index.isin(bad_rows)]
    quantities = quantities[~quantities["row"].isin(bad_rows)]
    rejected.sort(key=lambda r: (r["row"], r["column"]))
    raw = checked.raw.loc[valid.index]
    named = _named_items(raw, layout)
    frames = _canonical_frames(
        valid,
        raw,
        quantities,
        named,
        layout,
        project_currency,
        {name: parsed.loc[valid.index] for name, parsed in checked.parsed_dates.items()},
        checked.warnings,
    )
    frames.rejected = rejected
    frames.warnings = checked.warnings.as_list()
    frames.imported_rows = len(valid)
    frames.rejected_rows = len(bad_rows)
    return frames


def rejected_rows(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    layout: Layout,
    *,
    row_numbers: Sequence[int],
    dates: Mapping[str, DateColumn] | None = None,
    max_cell_chars: int | None = None,
) -> set[int]:
    """The numbers of the rows `build_frames` rejects, found by its row checks alone (the
    frames of the rows it keeps are not built): what settling an upload needs to know."""
    checked = _check_rows(headers, rows, 0, layout, max_cell_chars, dates, row_numbers)
    return {r["row"] for r in checked.rejected}


def _check_rows(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    first_row: int,
    layout: Layout,
    max_cell_chars: int | None,
    dates: Mapping[str, DateColumn] | None,
    row_numbers: Sequence[int] | None,
) -> _Checked:
    """The chunk's cells as a frame, the value rules applied, and every rejection found."""
    max_cell_chars = max_cell_chars or get_settings().max_cell_chars
    width = len(headers)
    rejected: list[dict[str, Any]] = []
    kept: list[Sequence[str]] = []
    kept_rows: list[int] = []
    kept_joined: list[str] = []  # each kept row's cells joined, for the cell rules' marks
    for offset, record in enumerate(rows):
        row_number = first_row + offset if row_numbers is None else row_numbers[offset]
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
        # No cell is longer than the row's cells joined: the longest is looked for only in a
        # row that long (a tenth of the loop's CPU, spent on rows of short cells).
        if "\x00" in joined or (
            len(joined) > max_cell_chars and max(map(len, cells), default=0) > max_cell_chars
        ):
            index, code = _unstorable_cell(cells, max_cell_chars)
            value = cells[index][:200] if code == "cell_too_large" else cells[index]
            rejected.append(rejection(row_number, headers[index], value.replace("\x00", ""), code))
            continue
        kept.append(cells)
        kept_rows.append(row_number)
        kept_joined.append(joined)

    raw = _raw_frame(kept, kept_rows, width)
    # The rows the cell rules must look at (`needs_cell_rules`), found for the chunk at once.
    flagged = [kept_rows[position] for position in rows_needing_cell_rules(kept_joined)]
    warnings = clean_cells(raw, flagged, headers)
    source = pd.DataFrame(
        {
            name: raw[layout.fields[name]] if name in layout.fields else ""
            for name in CANONICAL_FIELDS
        },
        index=raw.index,
    ).astype("str")
    emails, refusals = check_emails(source[EMAIL])
    refused = refusals.dropna()
    rejected += [
        rejection(row, headers_of(layout, EMAIL), source.at[row, EMAIL], "invalid_email", why)
        for row, why in zip(refused.index.tolist(), refused.tolist(), strict=True)
    ]
    source[EMAIL] = emails.where(refusals.isna() & (emails != ""), source[EMAIL])
    if layout.key_from_email:
        source[PLEDGE_KEY] = source[EMAIL]
    rejected += _cell_failures(source, layout)
    styles = {
        name: (dates or {}).get(name) or infer_date_column(source[name])
        for name in DATE_FIELDS
        if name in layout.fields
    }
    parsed_dates = {
        name: parse_date_column(source[name], styles[name])
        if styles.get(name)
        else pd.Series(pd.NaT, index=source.index, dtype=DATE_DTYPE)
        for name in DATE_FIELDS
    }
    rejected += _date_failures(source, parsed_dates, layout, styles)
    quantities = _quantity_cells(raw, layout)
    rejected += _quantity_failures(quantities)

    return _Checked(raw, source, rejected, warnings, parsed_dates, quantities)


def _raw_frame(kept: list[Sequence[str]], rows: list[int], width: int) -> pd.DataFrame:
    """The kept rows' cells as a frame of text columns (pandas' `str` dtype), indexed by row.

    Every cell is handed to Arrow at once, row after row (the rows chained in C), and each
    column taken from that array by its positions (every `width`-th cell): a fifth less CPU
    than pandas building it from the rows (through a 2-D array of objects) and converting, and
    then under half the CPU of turning the rows into columns in Python (`zip(*kept)`) to hand
    Arrow a column at a time (64 ms, now 24 ms, for 10,000 rows of 34 cells). Every kept row
    has `width` cells (`_check_rows`)."""
    index = pd.Index(rows, dtype="int64")
    if not kept:
        return pd.DataFrame(kept, index=index, columns=range(width))
    cells = pa_array(list(chain.from_iterable(kept)), type=large_string())
    size = len(kept) * width
    return pd.DataFrame(
        {
            at: pd.Series(cells.take(np.arange(at, size, width)), index=index, dtype="str")
            for at in range(width)
        },
        index=index,
    )


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


def _date_failures(
    source: pd.DataFrame,
    parsed: dict[str, pd.Series],
    layout: Layout,
    styles: Mapping[str, DateColumn | None],
) -> list[dict[str, Any]]:
    """A rejection for each non-blank date cell its column's style does not read."""
    out = []
    for name, values in parsed.items():
        bad = values.isna() & ~is_blank(source[name])
        if not bad.any():
            continue
        column = headers_of(layout, name)
        message = invalid_date_message(styles.get(name))
        cells = source.loc[bad, name]
        out += [
            rejection(row, column, cell, "invalid_date", message)
            for row, cell in zip(cells.index.tolist(), cells.tolist(), strict=True)
        ]
    return out


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
    addons = addon_ids(layout)
    columns = [(i, "addon", external_id) for i, external_id, _ in layout.addon_columns] + [
        (i, *product_of(name, addons)) for i, name in layout.item_columns
    ]
    if not columns or raw.empty:
        return pd.DataFrame(
            {
                "row": pd.Series(dtype="int64"),
                "column": pd.Series(dtype="int64"),
                "header": pd.Series(dtype="str"),
                "product_kind": pd.Series(dtype="str"),
                "product_key": pd.Series(dtype="str"),
                "value": pd.Series(dtype="str"),
            }
        )
    # Long form, one column's cells after another, built from arrays: each cell's column
    # (and its header, kind and key) repeated in C rather than one frame per column concatenated.
    rows = len(raw)
    which = np.repeat(np.arange(len(columns)), rows)

    def repeated(labels: list[str]) -> pd.Series:
        return pd.Series(pa_array(labels).take(which), dtype="str")

    values = [raw[index] for index, _, _ in columns]
    return pd.DataFrame(
        {
            "row": np.tile(raw.index.to_numpy(dtype="int64"), len(columns)),
            "column": np.array([index for index, _, _ in columns], dtype="int64")[which],
            "header": repeated([layout.headers[index].strip() for index, _, _ in columns]),
            "product_kind": repeated([kind for _, kind, _ in columns]),
            "product_key": repeated([key for _, _, key in columns]),
            "value": pd.concat(values, ignore_index=True).astype("str"),
        }
    )


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
    return stripped_or_none(cells)


def _money_column(cells: pd.Series, project_currency: str | None) -> tuple[pd.Series, pd.Series]:
    # SourceRows rejected the rows whose cells do not parse (MoneyError) already; should one
    # get here, parse_money raises its error.
    def parsed(cell: str) -> tuple[Decimal | None, str | None]:
        if not cell.strip():
            return None, None
        return cached_money(cell, project_currency) or parse_money(cell, project_currency)

    pairs = per_distinct(cells, parsed, (None, None))
    amounts = np.fromiter((amount for amount, _ in pairs), dtype=object, count=len(pairs))
    currencies = np.fromiter((currency for _, currency in pairs), dtype=object, count=len(pairs))
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
    dates: dict[str, pd.Series],
    warnings: ValueWarnings,
) -> ChunkFrames:
    text = {name: _blank_to_none(valid[name]) for name in valid.columns}
    for name, fallback in layout.fallbacks:
        text[name] = text[name].fillna(text[fallback])
    _apply_value_rules(text, layout, warnings)
    if layout.title_separator:
        title = text["reward_title"].str.split(layout.title_separator, n=1, regex=False).str[0]
        text["reward_title"] = _blank_to_none(title.fillna(""))
    money = {name: _money_column(valid[name], project_currency) for name in MONEY_FIELDS}
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

    reward_key, reward_products = _rewards(text, money["reward_minimum"])
    pledge_currency = money["amount"][1].fillna(money["shipping_amount"][1])
    pledges = pd.DataFrame(
        {
            "pledge_key": email if layout.key_from_email else valid["pledge_key"].str.strip(),
            "email": email,
            "product_key": reward_key.astype("str"),  # str even when the chunk is empty
            "amount": money["amount"][0],
            "shipping_amount": money["shipping_amount"][0],
            "currency": pledge_currency.fillna(project_currency or pd.NA).astype("str"),
            "status": text["status"].str.lower(),
            "pledged_at": dates["pledged_at"],
            "source_row": rows,
        }
    ).drop_duplicates("pledge_key", keep="last")

    winners = pledges["source_row"]
    answers = _answers(raw.loc[winners, [i for i, _ in layout.answer_columns]], layout)
    surveys = pd.DataFrame(
        {
            "pledge_key": pledges["pledge_key"],
            "responded_at": dates["responded_at"].loc[winners],
            **{name: text[name].loc[winners] for name in SURVEY_TEXT_FIELDS},
            "answers": pd.Series(answers, index=winners.index, dtype=object),
        }
    )

    # Add-on and item columns name products only for a chunk with rows: a header-only file
    # creates nothing.
    products = _products(reward_products, layout, named, header_columns=not valid.empty)
    inventory = _inventory(quantities, named, pledges, addon_ids(layout))
    return ChunkFrames(
        backers=BackerFrame.validate(backers),
        products=ProductFrame.validate(products),
        pledges=PledgeFrame.validate(pledges),
        surveys=SurveyFrame.validate(surveys),
        inventory=InventoryFrame.validate(inventory),
    )


def _answers(cells: pd.DataFrame, layout: Layout) -> list[dict[str, str]]:
    """Each row's answers: its non-blank answer cells, stripped, by answers key.

    The cells are stripped a column at a time by Arrow (`stripped_or_none`), so building each
    row's dict is the only work per cell in Python."""
    if not layout.answer_columns:
        return [{} for _ in range(len(cells))]
    keys = [key for _, key in layout.answer_columns]
    columns = [
        pa_array(stripped_or_none(cells.iloc[:, position]).array).to_pylist()
        for position in range(len(keys))
    ]
    return [
        {key: value for key, value in zip(keys, row, strict=True) if value is not None}
        for row in zip(*columns, strict=True)
    ]


def _apply_value_rules(text: dict[str, pd.Series], layout: Layout, warnings: ValueWarnings) -> None:
    """ISO country codes, then phones in E.164 with the row's country as region."""
    apply_countries(text, warnings)
    region = text["shipping_country_code"].fillna(text["country"])
    text["shipping_phone"] = phones(text["shipping_phone"], region, warnings)
    same_column = layout.fields.get("phone", -1) == layout.fields.get("shipping_phone", -2)
    text["phone"] = (
        text["shipping_phone"] if same_column else phones(text["phone"], region, warnings)
    )


def _rewards(
    text: dict[str, pd.Series], minimum: tuple[pd.Series, pd.Series]
) -> tuple[pd.Series, pd.DataFrame]:
    """Key each row's reward tier by its platform id, else its name; name it by its title,
    else `Reward <id>`, else `Reward <minimum>`. Two tiers with one title stay two products."""
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
    key = text["reward_id"].fillna(name).astype("str")
    rewards = pd.DataFrame(
        {
            "kind": "reward",
            "product_key": key,
            "name": name,
            "external_id": text["reward_id"],
            "price": price,
            "currency": currency,
        }
    )
    rewards = rewards[rewards["product_key"].notna()].drop_duplicates("product_key", keep="last")
    return key, rewards


def addon_ids(layout: Layout) -> dict[str, str]:
    """The add-on id of each add-on name: an item column or item name that names an add-on
    counts the same goods, so it shares the add-on's product."""
    return {name: external_id for _, external_id, name in layout.addon_columns}


def product_of(name: str, addons: dict[str, str]) -> tuple[str, str]:
    """(kind, product_key) of an item named `name`: the add-on of that name, else the item."""
    return ("addon", addons[name]) if name in addons else ("item", name)


def _products(
    rewards: pd.DataFrame, layout: Layout, named: pd.DataFrame, *, header_columns: bool = True
) -> pd.DataFrame:
    addons = addon_ids(layout)
    # A named item takes the first SKU seen with its name; its key stays the name, because the
    # SKU cell beside a name may be blank on some rows.
    skus = named.sort_values("row", kind="stable").groupby("product", sort=True)["sku"].first()
    addon_columns = layout.addon_columns if header_columns else ()
    item_columns = layout.item_columns if header_columns else ()
    extra = (
        [
            {
                "kind": "addon",
                "product_key": ext,
                "name": name,
                "external_id": ext,
                "price": None,
                "currency": None,
            }
            for _, ext, name in addon_columns
        ]
        + [
            {
                "kind": "item",
                "product_key": name,
                "name": name,
                "external_id": None,
                "price": None,
                "currency": None,
            }
            for _, name in item_columns
            if name not in addons
        ]
        + [
            {
                "kind": "item",
                "product_key": name,
                "name": name,
                "external_id": None if pd.isna(sku) else sku,
                "price": None,
                "currency": None,
            }
            for name, sku in skus.items()
            if name not in addons
        ]
    )
    products = pd.concat([rewards, pd.DataFrame(extra, columns=rewards.columns)])
    products = products.drop_duplicates(["kind", "product_key"]).reset_index(drop=True)
    products["price"] = products["price"].astype(object).where(products["price"].notna(), None)
    return products.astype(
        {
            "kind": "str",
            "product_key": "str",
            "name": "str",
            "external_id": "str",
            "currency": "str",
        }
    )


def _inventory(
    quantities: pd.DataFrame, named: pd.DataFrame, pledges: pd.DataFrame, addons: dict[str, str]
) -> pd.DataFrame:
    """Quantities above zero of each winning row, per (kind, product_key); an add-on and an
    item of the same name count the same goods, so the line takes the larger of the two. Named
    items (Indiegogo) count one unit per `Item Name` cell, summed where a row names one twice.

    Lines are grouped by integer codes (the pledge's position, the product's code) and only
    the lines kept become text: the cells of quantity 0 (about half) and of rows a later row
    of the chunk supersedes never leave Arrow."""
    winners = pd.Index(pledges["source_row"].to_numpy(dtype="int64"))
    # A quantity column holds a handful of distinct cells: convert each once.
    qty = per_distinct(quantities["value"], lambda cell: int(cell.strip() or "0"), 0, "int64")
    pledge_at = winners.get_indexer(quantities["row"].to_numpy(dtype="int64"))
    kept = (qty > 0) & (pledge_at >= 0)
    named = named[named["row"].isin(winners)]
    units = named.groupby(["row", "product"], sort=False).size()
    unit_products = [product_of(name, addons) for name in units.index.get_level_values("product")]
    kinds = np.concatenate(
        [
            quantities["product_kind"].to_numpy(dtype=object)[kept],
            np.array([kind for kind, _ in unit_products], dtype=object),
        ]
    )
    keys = np.concatenate(
        [
            quantities["product_key"].to_numpy(dtype=object)[kept],
            np.array([key for _, key in unit_products], dtype=object),
        ]
    )
    kind_codes, kind_names = pd.factorize(kinds)
    key_codes, key_names = pd.factorize(keys)
    lines = pd.DataFrame(
        {
            "pledge": np.concatenate(
                [
                    pledge_at[kept],
                    winners.get_indexer(units.index.get_level_values("row")),
                ]
            ).astype("int64"),
            "kind": kind_codes.astype("int64"),
            "key": key_codes.astype("int64"),
            "quantity": np.concatenate([qty[kept], units.to_numpy(dtype="int64")]),
        }
    )
    owed = lines[lines["quantity"] > 0].groupby(["pledge", "kind", "key"], sort=False)
    best = owed["quantity"].max().reset_index()
    pledge_keys = pledges["pledge_key"].to_numpy(dtype=object)
    out = pd.DataFrame(
        {
            "pledge_key": pd.array(pledge_keys[best["pledge"].to_numpy()], dtype="str"),
            "product_kind": pd.array(
                np.asarray(kind_names, dtype=object)[best["kind"].to_numpy()], dtype="str"
            ),
            "product_key": pd.array(
                np.asarray(key_names, dtype=object)[best["key"].to_numpy()], dtype="str"
            ),
            "quantity": best["quantity"].to_numpy(dtype="int64"),
        }
    )
    # In the order grouping by the text itself gave (sorted by pledge, kind, product).
    return out.sort_values(
        ["pledge_key", "product_kind", "product_key"], kind="stable", ignore_index=True
    )
