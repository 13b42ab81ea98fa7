"""The stages: temporary tables a chunk's canonical rows are loaded into before the writers
turn them into upserts, and the two ways of loading them.

Loading is the one step the dialects do differently: PostgreSQL takes the rows by COPY (the
bytes sent can be kept, and sent again from the row cache), SQLite (and PostgreSQL with
`PLEDGEFLOW_WRITE_PATH=portable`) by an executemany of inserts. Everything after the load is
the same statements on every dialect (`pledgeflow.writers`).
"""

from __future__ import annotations

import codecs
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
import pyarrow.compute as pc
from psycopg.abc import Buffer
from psycopg.copy import LibpqWriter
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Connection,
    MetaData,
    String,
    Table,
    delete,
    insert,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.schema import CreateTable

from pledgeflow.database import dumps_json
from pledgeflow.settings import get_settings
from pledgeflow.transform import ChunkFrames
from schemas.layout import SURVEY_TEXT_FIELDS
from schemas.tables import BACKER, INVENTORY, PLEDGE, PRODUCT, SURVEY

# What the writers compare to tell an unchanged row from a changed one, and what a product may
# have filled in.
PLEDGE_COMPARED = (
    "backer_id",
    "product_id",
    "amount",
    "shipping_amount",
    "currency",
    "status",
    "pledged_at",
    "platform",
)
BACKER_COMPARED = ("name", "phone", "country", "external_id")
PRODUCT_FILLED = ("external_id", "price", "currency")
# The survey columns a chunk writes, named once in schemas/layout.py.
SURVEY_COLUMNS = ("responded_at", *SURVEY_TEXT_FIELDS, "answers")
SURVEY_COMPARED = ("backer_id", *SURVEY_COLUMNS)

# Keys per statement when a list of them is sent: under SQLite's 32,766 bound parameters.
BATCH_ROWS = 1000

_STAGES = MetaData()


def _stage(name: str, loaded: Sequence[tuple[str, Column[Any]]], *working: Column[Any]) -> Table:
    """A temporary table: the columns loading fills (typed like their targets), then the
    working columns the writers fill in. Its rows are deleted at commit on PostgreSQL, and
    before every chunk on every dialect (a dry run writes its chunks in one transaction)."""
    return Table(
        name,
        _STAGES,
        *(Column(column, source.type) for column, source in loaded),
        *working,
        prefixes=["TEMPORARY"],
        postgresql_on_commit="DELETE ROWS",
        info={"loaded": tuple(column for column, _ in loaded)},
    )


def _state(name: str = "state") -> Column[Any]:
    """`c` created, `u` updated, `a` position advanced (unchanged), `s` superseded, NULL not
    written (unchanged, or not held)."""
    return Column(name, String(1))


STAGE_PRODUCT = _stage(
    "pf_stage_product",
    [(c, PRODUCT.c[c]) for c in ("kind", "product_key", "name", *PRODUCT_FILLED)],
    Column("id", BigInteger),
    Column("todo", Boolean),
    _state(),
)
STAGE_BACKER = _stage(
    "pf_stage_backer",
    [(c, BACKER.c[c]) for c in ("email", *BACKER_COMPARED, "source_row")],
    Column("id", BigInteger),
    _state(),
)
# One row per pledge the chunk holds the latest row of, with its survey columns beside it.
STAGE_PLEDGE = _stage(
    "pf_stage_pledge",
    [
        ("pledge_id", PLEDGE.c.pledge_id),
        ("email", BACKER.c.email),
        ("product_key", PRODUCT.c.product_key),
        *(
            (c, PLEDGE.c[c])
            for c in ("amount", "shipping_amount", "currency", "status", "pledged_at", "source_row")
        ),
        *((c, SURVEY.c[c]) for c in SURVEY_COLUMNS),
    ],
    Column("id", BigInteger),
    Column("backer_id", BigInteger),
    _state(),
    Column("survey_id", BigInteger),
    Column("survey_same", Boolean),
    _state("survey_state"),
)
STAGE_INVENTORY = _stage(
    "pf_stage_inventory",
    [
        ("pledge_key", PLEDGE.c.pledge_id),
        ("product_kind", PRODUCT.c.kind),
        ("product_key", PRODUCT.c.product_key),
        ("quantity", INVENTORY.c.quantity),
    ],
    Column("survey_id", BigInteger),
    Column("product_id", BigInteger),
    Column("same", Boolean),
)
STAGES = (STAGE_PRODUCT, STAGE_BACKER, STAGE_PLEDGE, STAGE_INVENTORY)


def loaded_columns(stage: Table) -> tuple[str, ...]:
    """The columns of a stage that loading fills, in COPY order."""
    columns: tuple[str, ...] = stage.info["loaded"]
    return columns


@cache
def _create_statements(dialect: Dialect) -> tuple[str, ...]:
    return tuple(
        str(CreateTable(stage, if_not_exists=True).compile(dialect=dialect)) for stage in STAGES
    )


def prepare_stages(conn: Connection) -> None:
    """Create the stages in this session if missing, and empty them."""
    for ddl in _create_statements(conn.dialect):
        conn.exec_driver_sql(ddl)
    for stage in STAGES:
        conn.execute(delete(stage))


def loads_by_copy(dialect: str) -> bool:
    """Whether staged rows go by COPY: on PostgreSQL, unless the settings ask for the portable
    loader (executemany, what SQLite uses)."""
    return dialect == "postgresql" and get_settings().write_path == "auto"


@dataclass(frozen=True)
class StagedCopies:
    """A chunk's canonical rows exactly as COPY sent them to each stage, and the row counts.

    Sending the same bytes again stages the same rows without mapping the chunk again."""

    data: dict[str, bytes]
    sizes: dict[str, int]


def load_stages(
    conn: Connection, rows: ChunkFrames | StagedCopies, *, keep: bool
) -> tuple[dict[str, int], StagedCopies | None]:
    """Load a chunk's rows into the stages; the rows per stage, and with `keep` (COPY only) the
    bytes sent."""
    if isinstance(rows, StagedCopies):
        with _psycopg(conn).cursor() as cursor:
            for stage in STAGES:
                copy_rows(cursor, stage, rows.data[stage.name])
        return rows.sizes, rows
    # Plain names: a Table's is a `quoted_name`, which orjson (the row cache) does not take.
    staged = {
        str(STAGE_PRODUCT.name): rows.products,
        str(STAGE_BACKER.name): rows.backers,
        str(STAGE_PLEDGE.name): _pledges_with_surveys(rows),
        str(STAGE_INVENTORY.name): rows.inventory,
    }
    sizes = {name: len(frame) for name, frame in staged.items()}
    if not loads_by_copy(conn.dialect.name):
        for stage in STAGES:
            records = _records(staged[stage.name], loaded_columns(stage))
            if records:
                conn.execute(insert(stage), records)
        return sizes, None
    data: dict[str, bytes] = {}
    encoding = codecs.lookup(copy_encoding(conn)).name
    with _psycopg(conn).cursor() as cursor:
        for stage in STAGES:
            kept = bytearray() if keep else None
            frame = staged[stage.name]
            if stage is STAGE_PLEDGE:  # a frame of its own (`_pledges_with_surveys`)
                frame["answers"] = [None if a is None else dumps_json(a) for a in frame["answers"]]
            columns = loaded_columns(stage)
            text = copy_text(frame, columns) if encoding == "utf-8" else None
            copy_rows(cursor, stage, _values(frame, columns) if text is None else text, kept)
            if kept is not None:
                data[str(stage.name)] = bytes(kept)
    return sizes, StagedCopies(data, sizes) if keep else None


def _pledges_with_surveys(frames: ChunkFrames) -> pd.DataFrame:
    """Pledges with their survey columns; surveys are built one per pledge, on the same rows."""
    surveys = frames.surveys.drop(columns="pledge_key")
    return frames.pledges.rename(columns={"pledge_key": "pledge_id"}).join(surveys)


def _records(frame: pd.DataFrame, columns: Sequence[str]) -> list[dict[str, Any]]:
    """Rows of `frame` as parameter dicts for an executemany: missing values become None."""
    return [
        {c: _plain(v) for c, v in zip(columns, values, strict=True)}
        for values in frame[list(columns)].itertuples(index=False, name=None)
    ]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if hasattr(value, "item") and not isinstance(value, dict | list | str):
        return value.item()
    return value


def _values(frame: pd.DataFrame, columns: Sequence[str]) -> Iterable[tuple[Any, ...]]:
    """Rows of `frame` as tuples COPY can send: missing values become None.

    Built column by column (a missing-value mask and one `tolist` each) and zipped into rows,
    which costs a fraction of converting the frame to objects and iterating its rows."""
    if frame.empty:
        return []
    lists = []
    for name in columns:
        column = frame[name]
        if isinstance(column.dtype, pd.DatetimeTZDtype):
            # ISO text in C (`…T05:38:00.000000Z`), instead of one Timestamp object per cell.
            utc = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
            values = np.datetime_as_string(utc, unit="us", timezone="UTC").astype(object)
        else:
            values = column.to_numpy(dtype=object, copy=True)
        missing = column.isna().to_numpy()
        if missing.any():
            values[missing] = None
        lists.append(values.tolist())
    return zip(*lists, strict=True)


# What COPY's text format escapes, and how (psycopg's own table): the backslash first, so that
# the backslashes the others put in are not escaped again.
COPY_ESCAPES = (
    ("\\", "\\\\"),
    ("\b", "\\b"),
    ("\t", "\\t"),
    ("\n", "\\n"),
    ("\v", "\\v"),
    ("\f", "\\f"),
    ("\r", "\\r"),
)
_EMPTY = pa.scalar("", pa.large_string())
# The bytes of COPY_ESCAPES' characters, as a table over byte values.
_ESCAPED_BYTES = np.zeros(256, dtype=bool)
_ESCAPED_BYTES[list(b"\\\b\t\n\v\f\r")] = True


def copy_text(frame: pd.DataFrame, columns: Sequence[str]) -> bytes | None:
    """The COPY data (text format, UTF-8) of `frame`'s rows, built a column at a time by
    Arrow's string kernels: the bytes psycopg's `write_row` sends for the same rows, without a
    Python call per row and cell. None when a column holds values this does not format (the
    rows then go by `write_row`).

    Text is escaped as psycopg escapes it, a missing value is `\\N`, numbers and Decimals are
    their `str`, timestamps ISO text in UTC (`_values`)."""
    if frame.empty:
        return b""
    texts = []
    for name in columns:
        column = _column_text(frame[name])
        if column is None:
            return None
        if _needs_escape(column):
            for char, escaped in COPY_ESCAPES:
                column = pc.replace_substring(column, char, escaped)
        texts.append(pc.fill_null(column, "\\N"))
    rows = pc.binary_join_element_wise(*texts, pa.scalar("\t", pa.large_string()))
    # Each row and its newline, which Arrow lays end to end in one buffer: the COPY data.
    lines = pc.binary_join_element_wise(rows, _EMPTY, pa.scalar("\n", pa.large_string()))
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64)
    start, end = offsets[lines.offset], offsets[lines.offset + len(lines)]
    return memoryview(lines.buffers()[2])[start:end].tobytes()


def _needs_escape(text: pa.Array) -> bool:
    """Whether any value of `text` holds a character COPY escapes: one table lookup per byte of
    its data (all of it, also bytes of values sliced away: escaping those is never wrong)."""
    data = text.buffers()[2]
    return data is not None and bool(_ESCAPED_BYTES[np.frombuffer(data, dtype=np.uint8)].any())


def _column_text(column: pd.Series) -> pa.Array | None:
    """A column as Arrow text, null where missing; None for values `copy_text` does not take."""
    missing = column.isna().to_numpy()
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        utc = column.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]")
        iso = np.datetime_as_string(utc, unit="us", timezone="UTC")
        return pa.array(iso, type=pa.large_string(), mask=missing)
    if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
        text = pa.array(column.array)
        if isinstance(text, pa.ChunkedArray):
            text = text.combine_chunks()
        return pc.cast(text, pa.large_string())
    if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iu":
        return pc.cast(pa.array(column.to_numpy()), pa.large_string())
    if column.dtype != object:
        return None
    values = column.to_numpy(dtype=object)
    try:  # text with None (or NaN) where missing, in one conversion
        return pa.array(values, type=pa.large_string(), from_pandas=True, mask=missing)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    # Other objects (Decimal amounts): each distinct value formatted once.
    codes, uniques = pd.factorize(values)
    formatted = []
    for value in uniques.tolist():
        if not _formats(value):
            return None
        formatted.append(str(value))
    distinct = pa.array(formatted, type=pa.large_string())
    return distinct.take(pa.array(codes, mask=(codes < 0) | missing))


def _formats(value: object) -> bool:
    """Whether `copy_text` writes `value` as its `str`, as psycopg's text dumpers do."""
    if isinstance(value, Decimal):
        return value.is_finite()
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def _sanitized(exc: psycopg.Error, what: str) -> StatementError:
    """The error without what the server quotes of the data: a COPY error's CONTEXT names the
    offending line and value, which may be a backer's email or address."""
    first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
    return DBAPIError.instance(
        what, None, type(exc)(first_line), psycopg.Error, hide_parameters=True
    )


class _KeptWriter(LibpqWriter):
    """Sends COPY data to the server and keeps a copy of every byte sent."""

    def __init__(self, cursor: psycopg.Cursor[Any], kept: bytearray) -> None:
        super().__init__(cursor)
        self.kept = kept

    def write(self, data: Buffer) -> None:
        self.kept += data
        super().write(data)


def copy_rows(
    cursor: psycopg.Cursor[Any],
    stage: Table,
    rows: Iterable[Sequence[Any]] | bytes,
    kept: bytearray | None = None,
) -> None:
    """COPY rows (or COPY data sent before) into a stage's loaded columns."""
    statement = f"COPY {stage.name} ({', '.join(loaded_columns(stage))}) FROM STDIN"
    writer = None if kept is None else _KeptWriter(cursor, kept)
    try:
        with cursor.copy(statement, writer=writer) as copying:
            if isinstance(rows, bytes):
                copying.write(rows)
            else:
                for row in rows:
                    copying.write_row(row)
    except psycopg.Error as exc:
        raise _sanitized(exc, f"COPY {stage.name}") from None


def _psycopg(conn: Connection) -> psycopg.Connection[Any]:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection), "COPY runs on psycopg"
    return raw


def copy_encoding(conn: Connection) -> str:
    """The encoding of the COPY data this connection sends (its client encoding)."""
    return _psycopg(conn).info.encoding
