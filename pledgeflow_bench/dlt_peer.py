"""dlt, the loader a data engineer would pick instead of pledgeflow, measured as a peer.

It loads the synthetic export (`pledgeflow_bench.exports`) into the same five tables (backer,
product, pledge, survey, inventory), merged on the same natural keys, in dlt's fastest documented
PostgreSQL configuration: the file read and cleaned as pyarrow columns in batches of 50,000 rows
(vector masks drop the rows pledgeflow rejects), arrow tables handed to dlt as they are, written
as CSV files and loaded with COPY into dlt's staging dataset, then merged with the `delete-insert`
strategy (staging deduplicated on the primary key, the latest source row winning), one merge per
table for the whole load.

What it keeps of pledgeflow's rules is only what a merge on keys gives: no foreign keys (tables
refer to each other by natural keys), no source-position rule across files, no validation report,
no per-chunk retry. The survey's answers are columns, as a data engineer would model them.

Run as `python -m pledgeflow_bench.dlt_peer FILE DSN DATASET WORKDIR OUT SHOP PROJECT`: one load,
measured in its own process (seconds, peak RSS, CPU), its figures written to OUT as JSON.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# No telemetry: the run is offline.
os.environ.setdefault("RUNTIME__DLTHUB_TELEMETRY", "false")

import dlt
import pyarrow as pa
import pyarrow.compute as pc
from pyarrow import csv as pacsv
from sqlalchemy.engine import make_url

from pledgeflow_bench.exports import ADDONS, ITEMS, STREAM_HEADERS

BATCH_ROWS = 50_000
SURVEY = {
    "shipping_name": "Shipping Name",
    "shipping_address_1": "Shipping Address 1",
    "shipping_address_2": "Shipping Address 2",
    "shipping_city": "Shipping City",
    "shipping_state": "Shipping State",
    "shipping_postal_code": "Shipping Postal Code",
    "shipping_country_name": "Shipping Country Name",
    "shipping_country_code": "Shipping Country Code",
    "shipping_phone": "Shipping Phone Number",
    "delivery_notes": "Shipping Delivery Notes",
    "bonus_support": "Bonus Support",
    "fulfillment_status": "Fulfillment Status",
    "notes": "Notes",
    "t_shirt_size": "What Is Your T-Shirt Size?",
}
# The add-on and item columns, in file order, with the product each quantity counts: an item
# named like an add-on is that add-on.
ADDON_KEYS = {name: str(addon_id) for addon_id, name, _ in ADDONS}
QUANTITIES = (
    *((f"[Addon: {addon_id}] {name}", "addon", str(addon_id)) for addon_id, name, _ in ADDONS),
    *(
        (name, "addon", ADDON_KEYS[name]) if name in ADDON_KEYS else (name, "item", name)
        for name in ITEMS
    ),
)
# Table: (primary key, merge key). The latest source row of a key wins (`dedup_sort`).
TABLES: dict[str, tuple[list[str], list[str] | None]] = {
    "backer": (["shop", "email"], None),
    "product": (["project", "kind", "product_key"], None),
    "pledge": (["project", "pledge_id"], None),
    "survey": (["project", "pledge_id"], None),
    # A pledge's lines are replaced as a whole.
    "inventory": (["project", "pledge_id", "kind", "product_key"], ["project", "pledge_id"]),
}
MONEY = r"^[0-9]+(\.[0-9]+)?$"
DATE = r"^[0-9]{4}/[0-9]{2}/[0-9]{2}, [0-9]{2}:[0-9]{2}$"


def _blank_to_null(values: pa.ChunkedArray) -> pa.ChunkedArray:
    trimmed = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


def _money(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(amounts, valid): `$1,234.00 USD` and its variants as decimals; blank is null."""
    digits = values
    for noise in ("USD", "$", ","):
        digits = pc.replace_substring(digits, noise, "")
    digits = pc.utf8_trim_whitespace(digits)
    blank = pc.equal(digits, "")
    valid = pc.or_(blank, pc.match_substring_regex(digits, MONEY))
    usable = pc.if_else(pc.and_(valid, pc.invert(blank)), digits, pa.scalar(None, pa.string()))
    return pc.cast(usable, pa.decimal128(12, 2)), valid


def _date(values: pa.ChunkedArray) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """(timestamps in UTC, valid): `2020/04/24, 05:37`; blank is null."""
    cells = pc.utf8_trim_whitespace(values)
    blank = pc.equal(cells, "")
    shaped = pc.match_substring_regex(cells, DATE)
    usable = pc.if_else(shaped, cells, pa.scalar(None, pa.string()))
    parsed = pc.strptime(usable, format="%Y/%m/%d, %H:%M", unit="s", error_is_null=True)
    valid = pc.or_(blank, pc.is_valid(parsed))
    return pc.cast(parsed, pa.timestamp("s", tz="UTC")), valid


def tables_of(batch: pa.Table, first_row: int, shop: str, project: str) -> dict[str, pa.Table]:
    """The five tables of one batch of the file, whose first row is number `first_row`; the rows
    pledgeflow would reject are left out."""
    column = batch.column
    rows = pa.array(range(first_row, first_row + batch.num_rows), pa.int64())
    email = pc.utf8_lower(pc.utf8_trim_whitespace(column("Email")))
    pledge_id = pc.utf8_trim_whitespace(column("Backer Number"))
    amount, amount_ok = _money(column("Pledge Amount"))
    shipping, shipping_ok = _money(column("Shipping Amount"))
    minimum, minimum_ok = _money(column("Backing Minimum"))
    pledged_at, pledged_ok = _date(column("Pledged At"))
    responded_at, responded_ok = _date(column("Survey Response"))
    quantities = []
    keep = pc.and_(pc.not_equal(email, ""), pc.not_equal(pledge_id, ""))
    for ok in (
        amount_ok,
        shipping_ok,
        minimum_ok,
        pledged_ok,
        responded_ok,
        pc.is_valid(pledged_at),
    ):
        keep = pc.and_(keep, ok)
    for header, _, _ in QUANTITIES:
        cells = pc.utf8_trim_whitespace(column(header))
        keep = pc.and_(keep, pc.match_substring_regex(cells, r"^[0-9]+$"))
        quantities.append(cells)

    def kept(values: Any) -> Any:
        return pc.filter(values, keep)

    n = pc.sum(pc.cast(keep, pa.int64())).as_py() or 0
    shops = pa.array([shop] * n, pa.string())
    projects = pa.array([project] * n, pa.string())
    source_row = kept(rows)
    title = kept(_blank_to_null(column("Reward Title")))
    reward_id = kept(_blank_to_null(column("Reward ID")))
    reward_key = pc.coalesce(reward_id, title)
    backer = pa.table(
        {
            "shop": shops,
            "email": kept(email),
            "name": kept(_blank_to_null(column("Backer Name"))),
            "phone": kept(_blank_to_null(column("Shipping Phone Number"))),
            "country": kept(_blank_to_null(column("Shipping Country"))),
            "external_id": kept(_blank_to_null(column("Backer UID"))),
            "source_row": source_row,
        }
    )
    pledge = pa.table(
        {
            "project": projects,
            "pledge_id": kept(pledge_id),
            "backer_email": kept(email),
            "reward_key": reward_key,
            "amount": kept(amount),
            "shipping_amount": kept(shipping),
            "currency": pa.array(["USD"] * n, pa.string()),
            "status": kept(pc.utf8_lower(_blank_to_null(column("Pledged Status")))),
            "pledged_at": kept(pledged_at),
            "source_row": source_row,
        }
    )
    survey = pa.table(
        {
            "project": projects,
            "pledge_id": kept(pledge_id),
            "backer_email": kept(email),
            "responded_at": kept(responded_at),
            **{name: kept(_blank_to_null(column(header))) for name, header in SURVEY.items()},
            "source_row": source_row,
        }
    )
    return {
        "backer": backer,
        "product": _products(project, title, reward_id, reward_key, kept(minimum), source_row),
        "pledge": pledge,
        "survey": survey,
        "inventory": _inventory(
            project, kept(pledge_id), [kept(q) for q in quantities], source_row
        ),
    }


def _products(
    project: str,
    title: pa.Array,
    reward_id: pa.Array,
    reward_key: pa.Array,
    minimum: pa.Array,
    source_row: pa.Array,
) -> pa.Table:
    """The batch's reward tiers, and every add-on and item of the file."""
    tiers = (
        pa.table(
            {
                "product_key": reward_key,
                "name": title,
                "external_id": reward_id,
                "price": minimum,
                "source_row": source_row,
            }
        )
        .filter(pc.is_valid(title))
        .group_by(["product_key", "name", "external_id"])
        .aggregate([("price", "max"), ("source_row", "max")])
        .rename_columns(["product_key", "name", "external_id", "price", "source_row"])
    )
    goods = {("addon", key): name for name, key in ADDON_KEYS.items()} | {
        ("item", name): name for name in ITEMS if name not in ADDON_KEYS
    }
    extra = len(goods)
    return pa.table(
        {
            "project": pa.array([project] * (tiers.num_rows + extra), pa.string()),
            "kind": pa.array(
                ["reward"] * tiers.num_rows + [kind for kind, _ in goods], pa.string()
            ),
            "product_key": pa.concat_arrays(
                [
                    tiers.column("product_key").combine_chunks(),
                    pa.array([key for _, key in goods], pa.string()),
                ]
            ),
            "name": pa.concat_arrays(
                [tiers.column("name").combine_chunks(), pa.array(list(goods.values()), pa.string())]
            ),
            "external_id": pa.concat_arrays(
                [
                    tiers.column("external_id").combine_chunks(),
                    pa.array(
                        [key if kind == "addon" else None for kind, key in goods], pa.string()
                    ),
                ]
            ),
            "price": pa.concat_arrays(
                [tiers.column("price").combine_chunks(), pa.nulls(extra, pa.decimal128(12, 2))]
            ),
            "currency": pa.array(["USD"] * tiers.num_rows + [None] * extra, pa.string()),
            "source_row": pa.concat_arrays(
                [tiers.column("source_row").combine_chunks(), pa.array([0] * extra, pa.int64())]
            ),
        }
    )


def _inventory(
    project: str, pledge_id: pa.Array, quantities: list[pa.Array], source_row: pa.Array
) -> pa.Table:
    """A pledge's goods above zero, one line per product (the larger quantity of an item and
    the add-on of the same name)."""
    parts = []
    for (_, kind, key), cells in zip(QUANTITIES, quantities, strict=True):
        quantity = pc.cast(cells, pa.int32())
        some = pc.greater(quantity, 0)
        count = pc.sum(pc.cast(some, pa.int64())).as_py() or 0
        parts.append(
            pa.table(
                {
                    "pledge_id": pc.filter(pledge_id, some),
                    "kind": pa.array([kind] * count, pa.string()),
                    "product_key": pa.array([key] * count, pa.string()),
                    "quantity": pc.filter(quantity, some),
                    "source_row": pc.filter(source_row, some),
                }
            )
        )
    lines = (
        pa.concat_tables(parts)
        .group_by(["pledge_id", "kind", "product_key"])
        .aggregate([("quantity", "max"), ("source_row", "max")])
        .rename_columns(["pledge_id", "kind", "product_key", "quantity", "source_row"])
    )
    return lines.add_column(0, "project", pa.array([project] * lines.num_rows, pa.string()))


def batches(path: Path) -> Iterator[tuple[int, pa.Table]]:
    """The file as text columns, `BATCH_ROWS` rows at a time, with each batch's first row."""
    reader = pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=8 << 20, encoding="utf8"),
        convert_options=pacsv.ConvertOptions(
            column_types=dict.fromkeys(STREAM_HEADERS, pa.string()),
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )
    pending: list[pa.RecordBatch] = []
    size, first = 0, 1
    for batch in reader:
        pending.append(batch)
        size += batch.num_rows
        while size >= BATCH_ROWS:
            table = pa.Table.from_batches(pending)
            yield first, table.slice(0, BATCH_ROWS)
            rest = table.slice(BATCH_ROWS)
            pending, size, first = rest.to_batches(), rest.num_rows, first + BATCH_ROWS
    if size:
        yield first, pa.Table.from_batches(pending)


def export_source(path: Path, shop: str, project: str) -> list[Any]:
    """dlt resources of the five tables of `path`: one reader, forked to a transformer per
    table with its keys and the merge disposition."""

    def read() -> Iterator[dict[str, pa.Table]]:
        for first, batch in batches(path):
            yield tables_of(batch, first, shop, project)

    export = dlt.resource(read(), name="export", selected=False)
    return [
        dlt.transformer(
            _picker(name),
            data_from=export,
            name=name,
            primary_key=primary_key,
            merge_key=merge_key or (),
            write_disposition="merge",  # its default strategy: delete-insert
            columns={"source_row": {"dedup_sort": "desc"}},
        )
        for name, (primary_key, merge_key) in TABLES.items()
    ]


def _picker(name: str) -> Callable[[dict[str, pa.Table]], Iterator[pa.Table]]:
    def pick(tables: dict[str, pa.Table]) -> Iterator[pa.Table]:
        yield tables[name]

    return pick


def load(
    path: Path, dsn: str, dataset: str, workdir: Path, shop: str, project: str
) -> dict[str, Any]:
    """Load `path` with dlt into schema `dataset` of `dsn`; the figures of the load."""
    url = make_url(dsn)
    if url.password is None:
        # dlt requires a password; a server with trust authentication ignores it.
        url = url.set(password="unused")  # noqa: S106
    pipeline = dlt.pipeline(
        pipeline_name="pledgeflow_bench_dlt",
        pipelines_dir=str(workdir / "dlt-pipelines"),
        destination=dlt.destinations.postgres(
            credentials=url.set(drivername="postgresql").render_as_string(hide_password=False)
        ),
        dataset_name=dataset,
    )
    started = time.perf_counter()
    info = pipeline.run(export_source(path, shop, project), loader_file_format="csv")
    seconds = time.perf_counter() - started
    info.raise_on_failed_jobs()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "dlt_version": dlt.__version__,
    }


def _child(argv: list[str]) -> None:
    path, dsn, dataset, workdir, out, shop, project = argv
    figures = load(Path(path), dsn, dataset, Path(workdir), shop, project)
    Path(out).write_text(json.dumps(figures))


if __name__ == "__main__":
    _child(sys.argv[1:])
