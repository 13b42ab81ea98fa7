"""PostgreSQL write path: COPY a chunk into temporary tables, then one set-based upsert per table.

Same rules and counts as the portable path in `pledgeflow.upserts` (which SQLite keeps): every
write is an upsert on the natural key with a no-op guard, backers and pledges obey the position
rule, surveys and inventory are written for the pledges whose latest row this chunk holds, and a
held pledge's inventory is replaced. What changes is the cost:

- the canonical rows travel by COPY into `ON COMMIT DELETE ROWS` temporary tables that live as
  long as the pooled connection, and every table is written by `INSERT … SELECT … ON CONFLICT`
  statements in dependency order (products, new backers, pledges, surveys, inventory, then the
  backers that existed before the chunk), keys sorted so that concurrent chunks take row locks
  in one order and cannot deadlock; existing backers come last because chunks share them, and a
  lock taken last is held for the end of the transaction only;
- ids are found by index probes (`ON CONFLICT`, `RETURNING`, or a scalar subquery per staged
  row), never by a join the planner could turn into a scan of a whole table;
- counts come from the statements themselves (`RETURNING (xmax = 0)`);
- unchanged rows cost a read, not a write: a backer or pledge equal to what is stored keeps
  its row and its position, except while `WriteTarget.advance` asks for the position to move
  (see `_positioned`); rows a later row of the upload supersedes were settled before the
  chunks ran, and are dropped from the stages (pledges) or only created if missing (backers).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg.abc import Buffer
from psycopg.copy import LibpqWriter
from sqlalchemy import Column, Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import DBAPIError, StatementError

from pledgeflow.database import dumps_json
from pledgeflow.transform import ChunkFrames
from pledgeflow.upserts import (
    BACKER_COMPARED,
    PLEDGE_COMPARED,
    PRODUCT_FILLED,
    SURVEY_COLUMNS,
    TableCounts,
    WriteCounts,
    WriteTarget,
)
from schemas.tables import BACKER, INVENTORY, PLEDGE, PRODUCT, SURVEY

_DIALECT = postgresql.psycopg.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's own


@dataclass(frozen=True)
class _Stage:
    """A temporary table: columns COPY fills (typed like their targets) plus working columns."""

    name: str
    copied: tuple[tuple[str, Column[Any]], ...]
    working: str

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.copied)

    def ddl(self) -> str:
        typed = [f"{name} {column.type.compile(dialect=_DIALECT)}" for name, column in self.copied]
        return (
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {self.name} "
            f"({', '.join([*typed, self.working])}) ON COMMIT DELETE ROWS"
        )


SURVEY_COMPARED = ("backer_id", *SURVEY_COLUMNS)

STAGE_PRODUCT = _Stage(
    "pf_stage_product",
    tuple((c, PRODUCT.c[c]) for c in ("kind", "product_key", "name", *PRODUCT_FILLED)),
    "id bigint, todo boolean, state char(1)",
)
STAGE_BACKER = _Stage(
    "pf_stage_backer",
    tuple((c, BACKER.c[c]) for c in ("email", *BACKER_COMPARED, "source_row")),
    "id bigint, state char(1)",
)
# One row per pledge the chunk holds the latest row of, with its survey columns beside it.
STAGE_PLEDGE = _Stage(
    "pf_stage_pledge",
    (
        ("pledge_id", PLEDGE.c.pledge_id),
        ("email", BACKER.c.email),
        ("product_key", PRODUCT.c.product_key),
        *((c, PLEDGE.c[c]) for c in ("amount", "shipping_amount", "currency", "status")),
        ("pledged_at", PLEDGE.c.pledged_at),
        ("source_row", PLEDGE.c.source_row),
        *((c, SURVEY.c[c]) for c in SURVEY_COLUMNS),
    ),
    "id bigint, backer_id bigint, state char(1), survey_id bigint, survey_same boolean, "
    "survey_state char(1)",
)
STAGE_INVENTORY = _Stage(
    "pf_stage_inventory",
    (
        ("pledge_key", PLEDGE.c.pledge_id),
        ("product_kind", PRODUCT.c.kind),
        ("product_key", PRODUCT.c.product_key),
        ("quantity", INVENTORY.c.quantity),
    ),
    "survey_id bigint, product_id bigint, same boolean",
)
STAGES = (STAGE_PRODUCT, STAGE_BACKER, STAGE_PLEDGE, STAGE_INVENTORY)
CREATE_STAGES = ";\n".join(stage.ddl() for stage in STAGES)


def _row(prefix: str, columns: Iterable[str]) -> str:
    return "ROW(" + ", ".join(f"{prefix}{c}" for c in columns) + ")"


def _later(position: tuple[str, str]) -> str:
    return f"{_row('excluded.', position)} > {_row('t.', position)}"


# Products: a product needs a write only when it is new or the file fills a blank of it; the
# others are left unlocked, so chunks sharing the upload's products do not queue on them.
PRODUCT_PROBE = f"""
UPDATE {STAGE_PRODUCT.name} s SET (id, todo) = (
    SELECT p.id, {" OR ".join(f"(p.{c} IS NULL AND s.{c} IS NOT NULL)" for c in PRODUCT_FILLED)}
    FROM product p
    WHERE p.project_id = %(project_id)s AND p.kind = s.kind AND p.product_key = s.product_key)
"""
PRODUCT_UPSERT = f"""
WITH w AS (
    INSERT INTO product AS t (project_id, kind, product_key, name, {", ".join(PRODUCT_FILLED)})
    SELECT %(project_id)s, kind, product_key, name, {", ".join(PRODUCT_FILLED)}
    FROM {STAGE_PRODUCT.name}
    WHERE id IS NULL OR todo ORDER BY kind, product_key
    ON CONFLICT (project_id, kind, product_key) DO UPDATE
    SET {", ".join(f"{c} = coalesce(t.{c}, excluded.{c})" for c in PRODUCT_FILLED)}
    WHERE {" OR ".join(f"(t.{c} IS NULL AND excluded.{c} IS NOT NULL)" for c in PRODUCT_FILLED)}
    RETURNING t.id, t.kind, t.product_key, (t.xmax = 0) AS created
)
UPDATE {STAGE_PRODUCT.name} s
SET id = w.id, state = CASE WHEN w.created THEN 'c' ELSE 'u' END
FROM w WHERE s.kind = w.kind AND s.product_key = w.product_key
"""
PRODUCT_IDS = f"""
UPDATE {STAGE_PRODUCT.name} s SET id = (
    SELECT p.id FROM product p
    WHERE p.project_id = %(project_id)s AND p.kind = s.kind AND p.product_key = s.product_key)
WHERE s.state IS NULL
"""


def _positioned(
    table: str,
    conflict: str,
    stage: _Stage,
    key: str,
    values: dict[str, str],
    source: str,
    *,
    compared: Sequence[str],
    position: tuple[str, str],
    advance: bool,
) -> str:
    """One statement of the position rule over the staged rows not yet handled (`state IS
    NULL`). With `advance`: insert new keys and move the position of rows from an earlier
    position whose content is equal (marked `a`, unchanged). Without: rewrite the rows left over
    that come from an earlier position and differ (marked `u`). The first statement locks every
    existing key it reads, in key order, so the second sees the rows exactly as the first
    classified them."""
    content = list(compared)
    if advance:
        assign: Sequence[str] = position
        guard = f"{_row('t.', content)} IS NOT DISTINCT FROM {_row('excluded.', content)}"
        mark = "a"
    else:
        assign = (*content, *position)
        guard = f"{_row('t.', content)} IS DISTINCT FROM {_row('excluded.', content)}"
        mark = "u"
    # A pledge keeps the backer id it was written with; surveys take it from there.
    backer = ", t.backer_id" if "backer_id" in values else ""
    keep = ", backer_id = w.backer_id" if backer else ""
    return f"""
WITH w AS (
    INSERT INTO {table} AS t ({", ".join(values)})
    SELECT {", ".join(values.values())} FROM {source} WHERE s.state IS NULL
    ORDER BY s.{key}
    ON CONFLICT ({conflict}) DO UPDATE
    SET {", ".join(f"{c} = excluded.{c}" for c in assign)}
    WHERE {_later(position)} AND {guard}
    RETURNING t.id, t.{key}{backer}, (t.xmax = 0) AS created
)
UPDATE {stage.name} s
SET id = w.id, state = CASE WHEN w.created THEN 'c' ELSE '{mark}' END{keep}
FROM w WHERE s.{key} = w.{key}
"""


BACKER_VALUES = {
    "shop": "%(shop)s",
    **{c: f"s.{c}" for c in ("email", *BACKER_COMPARED)},
    "source_upload_id": "%(upload_id)s",
    "source_row": "s.source_row",
}
BACKER_STATEMENTS = tuple(
    _positioned(
        "backer",
        "shop, email",
        STAGE_BACKER,
        "email",
        BACKER_VALUES,
        f"{STAGE_BACKER.name} s",
        compared=BACKER_COMPARED,
        position=("source_upload_id", "source_row"),
        advance=advance,
    )
    for advance in (True, False)
)
# New backers first, without touching existing ones: their ids are what the pledges need.
BACKER_INSERT = f"""
WITH w AS (
    INSERT INTO backer AS t ({", ".join(BACKER_VALUES)})
    SELECT {", ".join(BACKER_VALUES.values())} FROM {STAGE_BACKER.name} s ORDER BY s.email
    ON CONFLICT (shop, email) DO NOTHING
    RETURNING t.id, t.email
)
UPDATE {STAGE_BACKER.name} s SET id = w.id, state = 'c' FROM w WHERE s.email = w.email
"""
BACKER_IDS = f"""
UPDATE {STAGE_BACKER.name} s SET id = (
    SELECT b.id FROM backer b WHERE b.shop = %(shop)s AND b.email = s.email)
WHERE s.state IS NULL
"""

PLEDGE_VALUES = {
    "project_id": "%(project_id)s",
    "pledge_id": "s.pledge_id",
    "backer_id": "b.id",
    "product_id": "p.id",
    **{c: f"s.{c}" for c in ("amount", "shipping_amount", "currency", "status", "pledged_at")},
    "platform": "%(platform)s",
    "upload_id": "%(upload_id)s",
    "source_row": "s.source_row",
}
PLEDGE_STATEMENTS = tuple(
    _positioned(
        "pledge",
        "project_id, pledge_id",
        STAGE_PLEDGE,
        "pledge_id",
        PLEDGE_VALUES,
        f"{STAGE_PLEDGE.name} s JOIN {STAGE_BACKER.name} b ON b.email = s.email "
        f"LEFT JOIN {STAGE_PRODUCT.name} p ON p.kind = 'reward' AND p.product_key = s.product_key",
        compared=PLEDGE_COMPARED,
        position=("upload_id", "source_row"),
        advance=advance,
    )
    for advance in (True, False)
)
# A pledge the statements did not write is still held when its stored position is this very
# row, or an earlier one whose content is equal (an unchanged pledge, left unwritten).
PLEDGE_HELD = f"""
UPDATE {STAGE_PLEDGE.name} s SET (id, backer_id) = (
    SELECT t.id, t.backer_id FROM pledge t
    WHERE t.project_id = %(project_id)s AND t.pledge_id = s.pledge_id
      AND ROW(t.upload_id, t.source_row) <= ROW(%(upload_id)s::bigint, s.source_row))
WHERE s.state IS NULL
"""
# Rows a later row of the same upload supersedes (settled before the chunks ran): a pledge is
# not written at all, with its survey and inventory; a backer is only created if missing.
PLEDGE_SUPERSEDED = (
    f"DELETE FROM {STAGE_PLEDGE.name} WHERE source_row = ANY(%(superseded_pledges)s::int[])"
)
BACKER_SUPERSEDED = (
    f"UPDATE {STAGE_BACKER.name} SET state = 's' "
    "WHERE state IS NULL AND source_row = ANY(%(superseded_backers)s::int[])"
)

# Surveys of held pledges that existed before this chunk: compare first, so an unchanged survey
# is read, not locked; a pledge created by this chunk has no survey yet.
SURVEY_PROBE = f"""
UPDATE {STAGE_PLEDGE.name} s SET (survey_id, survey_same) = (
    SELECT v.id, {_row("v.", SURVEY_COMPARED)} IS NOT DISTINCT FROM {_row("s.", SURVEY_COMPARED)}
    FROM survey v WHERE v.pledge_id = s.id)
WHERE s.id IS NOT NULL AND s.state IS DISTINCT FROM 'c'
"""
SURVEY_UPSERT = f"""
WITH w AS (
    INSERT INTO survey AS t (pledge_id, {", ".join(SURVEY_COMPARED)})
    SELECT s.id, {", ".join(f"s.{c}" for c in SURVEY_COMPARED)} FROM {STAGE_PLEDGE.name} s
    WHERE s.id IS NOT NULL AND s.survey_same IS NOT TRUE
    ORDER BY s.id
    ON CONFLICT (pledge_id) DO UPDATE
    SET {", ".join(f"{c} = excluded.{c}" for c in SURVEY_COMPARED)}
    WHERE {_row("t.", SURVEY_COMPARED)} IS DISTINCT FROM {_row("excluded.", SURVEY_COMPARED)}
    RETURNING t.id, t.pledge_id, (t.xmax = 0) AS created
)
UPDATE {STAGE_PLEDGE.name} s
SET survey_id = w.id, survey_state = CASE WHEN w.created THEN 'c' ELSE 'u' END
FROM w WHERE s.id = w.pledge_id
"""

INVENTORY_RESOLVE = f"""
UPDATE {STAGE_INVENTORY.name} w SET survey_id = s.survey_id, product_id = p.id
FROM {STAGE_PLEDGE.name} s, {STAGE_PRODUCT.name} p
WHERE s.pledge_id = w.pledge_key AND s.survey_id IS NOT NULL
  AND p.kind = w.product_kind AND p.product_key = w.product_key
"""
# Surveys that existed before this chunk may carry lines the latest row no longer has.
_OLD_SURVEYS = (
    f"ARRAY(SELECT survey_id FROM {STAGE_PLEDGE.name} "
    "WHERE survey_id IS NOT NULL AND survey_state IS DISTINCT FROM 'c' ORDER BY survey_id)"
)
INVENTORY_DELETE = f"""
DELETE FROM inventory i
WHERE i.survey_id = ANY({_OLD_SURVEYS})
  AND NOT EXISTS (
    SELECT 1 FROM {STAGE_INVENTORY.name} w
    WHERE w.survey_id = i.survey_id AND w.product_id = i.product_id)
"""
INVENTORY_PROBE = f"""
UPDATE {STAGE_INVENTORY.name} w SET same = (
    SELECT i.quantity = w.quantity FROM inventory i
    WHERE i.survey_id = w.survey_id AND i.product_id = w.product_id)
FROM {STAGE_PLEDGE.name} s
WHERE s.survey_id = w.survey_id AND s.survey_state IS DISTINCT FROM 'c'
"""
INVENTORY_UPSERT = f"""
WITH w AS (
    INSERT INTO inventory AS t (survey_id, product_id, quantity)
    SELECT survey_id, product_id, quantity FROM {STAGE_INVENTORY.name}
    WHERE survey_id IS NOT NULL AND same IS NOT TRUE
    ORDER BY survey_id, product_id
    ON CONFLICT (survey_id, product_id) DO UPDATE SET quantity = excluded.quantity
    WHERE t.quantity IS DISTINCT FROM excluded.quantity
    RETURNING t.survey_id, t.product_id, (t.xmax = 0) AS created
)
SELECT survey_id, product_id, created FROM w
"""
INVENTORY_WANTED = (
    f"SELECT DISTINCT survey_id, product_id FROM {STAGE_INVENTORY.name} WHERE survey_id IS NOT NULL"
)


def _states(stage: str, column: str = "state", scope: str = "") -> str:
    return (
        f"SELECT count(*) FILTER (WHERE {column} = 'c'), "
        f"count(*) FILTER (WHERE {column} = 'u'), count(*) {scope} FROM {stage}"
    )


COUNTS = (
    ("backer", _states(STAGE_BACKER.name)),
    ("product", _states(STAGE_PRODUCT.name)),
    ("pledge", _states(STAGE_PLEDGE.name)),
    ("survey", _states(STAGE_PLEDGE.name, "survey_state", "FILTER (WHERE id IS NOT NULL)")),
)
# Each staged key and its outcome, for distinct counts across chunks (`pledgeflow.distinct`);
# keys are those of the portable path: the scope parameter, then the staged key.
KEY_STATES = (
    ("backer", "shop", f"SELECT email, state FROM {STAGE_BACKER.name}"),
    ("product", "project_id", f"SELECT kind::text, product_key, state FROM {STAGE_PRODUCT.name}"),
    ("pledge", "project_id", f"SELECT pledge_id, state FROM {STAGE_PLEDGE.name}"),
    ("survey", None, f"SELECT id, survey_state FROM {STAGE_PLEDGE.name} WHERE id IS NOT NULL"),
)
STATE_OUTCOMES = {"c": "created", "u": "updated"}


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


@dataclass(frozen=True)
class StagedCopies:
    """A chunk's canonical rows exactly as COPY sent them to each stage, and the row counts.

    Sending the same bytes again stages the same rows without mapping the chunk again."""

    data: dict[str, bytes]
    sizes: dict[str, int]


def _copy(
    cursor: psycopg.Cursor[Any],
    stage: _Stage,
    rows: Iterable[Sequence[Any]] | bytes,
    kept: bytearray | None = None,
) -> None:
    statement = f"COPY {stage.name} ({', '.join(stage.columns)}) FROM STDIN"
    writer = None if kept is None else _KeptWriter(cursor, kept)
    try:
        with cursor.copy(statement, writer=writer) as copy:
            if isinstance(rows, bytes):
                copy.write(rows)
            else:
                for row in rows:
                    copy.write_row(row)
    except psycopg.Error as exc:
        raise _sanitized(exc, f"COPY {stage.name}") from None


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


def _pledge_rows(frames: ChunkFrames) -> Iterable[tuple[Any, ...]]:
    """Pledges with their survey columns; surveys are built one per pledge, on the same rows."""
    surveys = frames.surveys.drop(columns="pledge_key")
    joined = frames.pledges.rename(columns={"pledge_key": "pledge_id"}).join(surveys)
    joined["answers"] = [None if a is None else dumps_json(a) for a in joined["answers"]]
    return _values(joined, STAGE_PLEDGE.columns)


def _stage_frames(
    cursor: psycopg.Cursor[Any], frames: ChunkFrames, *, keep: bool
) -> tuple[dict[str, int], StagedCopies | None]:
    """COPY the frames into the stages; the rows per stage, and with `keep` the bytes sent."""
    staged = {
        STAGE_PRODUCT.name: (_values(frames.products, STAGE_PRODUCT.columns), frames.products),
        STAGE_BACKER.name: (_values(frames.backers, STAGE_BACKER.columns), frames.backers),
        STAGE_PLEDGE.name: (_pledge_rows(frames), frames.pledges),
        STAGE_INVENTORY.name: (
            _values(frames.inventory, STAGE_INVENTORY.columns),
            frames.inventory,
        ),
    }
    sizes = {name: len(frame) for name, (_, frame) in staged.items()}
    data: dict[str, bytes] = {}
    for stage in STAGES:
        kept = bytearray() if keep else None
        _copy(cursor, stage, staged[stage.name][0], kept)
        if kept is not None:
            data[stage.name] = bytes(kept)
    return sizes, StagedCopies(data, sizes) if keep else None


def _psycopg(conn: Connection) -> psycopg.Connection[Any]:
    raw = conn.connection.driver_connection
    assert isinstance(raw, psycopg.Connection), "the staged path runs on psycopg"
    return raw


def copy_encoding(conn: Connection) -> str:
    """The encoding of the COPY data this connection sends (its client encoding)."""
    return _psycopg(conn).info.encoding


def write_chunk_staged(
    conn: Connection, target: WriteTarget, rows: ChunkFrames | StagedCopies, *, keep: bool = False
) -> tuple[WriteCounts, StagedCopies | None]:
    """Write all five tables for one chunk through COPY and set-based upserts, inside `conn`'s
    transaction, with the same rules and counts as `pledgeflow.upserts.write_chunk`.

    `rows` is the chunk's frames, or the COPY data an earlier write of the same rows returned
    (with `keep`, for frames); either way the statements after the COPY are the same."""
    params = {
        "shop": target.shop,
        "project_id": target.project_id,
        "upload_id": target.upload_id,
        "platform": target.platform,
        "superseded_pledges": sorted(target.superseded_pledges),
        "superseded_backers": sorted(target.superseded_backers),
    }
    raw = _psycopg(conn)

    def run(sql: str) -> int:
        return int(conn.exec_driver_sql(sql, params).rowcount)

    # The per-row probes inflate cost estimates past jit_above_cost, and compiling them took
    # longer (~0.4 s) than running them (~25 ms): these statements never repay JIT.
    conn.exec_driver_sql("SET LOCAL jit = off")
    conn.exec_driver_sql(CREATE_STAGES)
    with raw.cursor() as cursor:
        copies: StagedCopies | None
        if isinstance(rows, StagedCopies):
            copies, sizes = rows, rows.sizes
            for stage in STAGES:
                _copy(cursor, stage, copies.data[stage.name])
        else:
            sizes, copies = _stage_frames(cursor, rows, keep=keep)
    products, backers, pledges, inventory_rows = (sizes[stage.name] for stage in STAGES)
    if pledges and target.superseded_pledges:
        pledges -= run(PLEDGE_SUPERSEDED)

    if products:
        run(PRODUCT_PROBE)
        if run(PRODUCT_UPSERT) < products:
            run(PRODUCT_IDS)
    # Chunks of an upload share backers. New ones are inserted first (their ids are what the
    # pledges need) and existing ones are read without a lock; the existing ones are advanced or
    # rewritten last, so a chunk holds their locks only for the end of its transaction instead
    # of making every chunk that shares one wait for its whole write.
    new_backers = run(BACKER_INSERT) if backers else 0
    if new_backers < backers:
        run(BACKER_IDS)
    advance, rewrite = PLEDGE_STATEMENTS
    handled = run(advance) if pledges and target.advance else 0
    if handled < pledges:
        handled += run(rewrite)
    if handled < pledges:
        run(PLEDGE_HELD)
    inventory = TableCounts()
    if pledges:
        run(SURVEY_PROBE)
        run(SURVEY_UPSERT)
        if inventory_rows:
            run(INVENTORY_RESOLVE)
        inventory.deleted = run(INVENTORY_DELETE)
        if inventory_rows:
            run(INVENTORY_PROBE)
            written = {
                (survey, product): "created" if created else "updated"
                for survey, product, created in conn.exec_driver_sql(INVENTORY_UPSERT)
            }
            for survey, product in conn.exec_driver_sql(INVENTORY_WANTED):
                inventory.keys.add(written.get((survey, product), "unchanged"), (survey, product))
            inventory.created = len(inventory.keys.created)
            inventory.updated = len(inventory.keys.updated)
            inventory.unchanged = len(inventory.keys.unchanged)
    if new_backers < backers:
        settled = new_backers
        if target.superseded_backers:
            settled += run(BACKER_SUPERSEDED)
        advance, rewrite = BACKER_STATEMENTS
        if target.advance:
            settled += run(advance)
        if settled < backers:
            run(rewrite)
    counts = WriteCounts()
    for name, sql in COUNTS:
        created, updated, total = conn.exec_driver_sql(sql).one()
        counts.tables[name] = TableCounts(created, updated, total - created - updated)
    for name, scope, sql in KEY_STATES:
        keys = counts.tables[name].keys
        for *key, state in conn.exec_driver_sql(sql):
            keys.add(
                STATE_OUTCOMES.get(state, "unchanged"),
                tuple(key) if scope is None else (params[scope], *key),
            )
    counts.tables["inventory"] = inventory
    return counts, copies
