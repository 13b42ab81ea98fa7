"""What the dialects cannot say alike; every rule is stated in the writers, once.

- Which rows an upsert created: PostgreSQL tells by `xmax = 0` on the returned row; SQLite,
  whose transaction is the only writer, by an id above the largest one before the statement
  (a rowid table without AUTOINCREMENT numbers new rows past its largest id).
- Recording what an upsert wrote on the staged rows: PostgreSQL in the same statement (a data-
  modifying `WITH`), SQLite by an executemany of the returned rows.
- Which keys an upsert wrote, when nothing needs recording on the staged rows: PostgreSQL
  aggregates the returned keys in the same statement, SQLite groups the returned rows.
- Many values read back by state: PostgreSQL as one array per state, SQLite one row each.
- A key set read from a stage: PostgreSQL as an array (`= ANY(…)`), which the planner probes
  through the index instead of joining; SQLite as `IN (SELECT …)`, which it always probes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Select,
    Table,
    any_,
    bindparam,
    case,
    cast,
    func,
    literal,
    literal_column,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by
from sqlalchemy.sql.dml import Insert


def is_postgresql(conn: Connection) -> bool:
    """Whether `conn` talks to PostgreSQL (else SQLite)."""
    return conn.dialect.name == "postgresql"


def upsert_into(conn: Connection, table: Table) -> Any:
    """`INSERT` with `ON CONFLICT` for this dialect (both accept the same arguments)."""
    return postgresql.insert(table) if is_postgresql(conn) else sqlite.insert(table)


def created_flag(conn: Connection, table: Table) -> ColumnElement[bool]:
    """A column for `RETURNING` that is true on the rows the statement inserted; call it just
    before the statement."""
    if is_postgresql(conn):
        return literal_column("xmax = 0", Boolean).label("created")
    before = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return (table.c.id > literal(before)).label("created")


def record_written(
    conn: Connection,
    upsert: Insert,
    stage: Table,
    on: Mapping[str, str],
    copied: Mapping[str, str],
    state: str,
    mark: str,
) -> int:
    """Run `upsert` (returning the names in `on` and `copied`, and `created`) and record on each
    staged row it wrote its `copied` values and its `state`: `c` if created, else `mark`.
    `on` matches a stage column to a returned one. Returns the staged rows recorded."""
    if is_postgresql(conn):
        written = upsert.cte("w")
        values: dict[Any, Any] = {stage.c[c]: written.c[r] for c, r in copied.items()}
        values[stage.c[state]] = case((written.c.created, "c"), else_=mark)
        matched = (stage.c[c] == written.c[r] for c, r in on.items())
        return int(conn.execute(update(stage).values(values).where(*matched)).rowcount)
    rows = conn.execute(upsert).mappings().all()
    if rows:
        record = (
            update(stage)
            .where(*(stage.c[c] == bindparam(f"w_{c}") for c in on))
            .values(
                {
                    **{c: bindparam(f"v_{c}") for c in copied},
                    state: bindparam("v_state"),
                }
            )
        )
        conn.execute(
            record,
            [
                {
                    **{f"w_{c}": row[r] for c, r in on.items()},
                    **{f"v_{c}": row[r] for c, r in copied.items()},
                    "v_state": "c" if row["created"] else mark,
                }
                for row in rows
            ],
        )
    return len(rows)


def written_keys(conn: Connection, upsert: Insert, mark: str) -> dict[str, list[str]]:
    """Run `upsert` (returning `key`, a key's text, and `created`) and return the keys it wrote
    by state: `c` if created, else `mark`. Nothing is written to the staged rows: on PostgreSQL
    one array per state comes back from the same statement, with no join back to the stage."""
    if is_postgresql(conn):
        written = upsert.cte("w")
        keys = func.array_agg(written.c.key, type_=ARRAY(written.c.key.type))
        rows = conn.execute(select(written.c.created, keys).group_by(written.c.created)).all()
        return {("c" if created else mark): list(texts) for created, texts in rows}
    grouped: dict[str, list[str]] = {}
    for key, created in conn.execute(upsert).all():
        grouped.setdefault("c" if created else mark, []).append(key)
    return grouped


def in_staged(conn: Connection, column: ColumnElement[Any], keys: Select[Any]) -> Any:
    """`column` is one of the keys `keys` (one column, read from a stage) selects."""
    if is_postgresql(conn):
        (key,) = keys.selected_columns
        array = keys.with_only_columns(func.array_agg(aggregate_order_by(key, key)))
        # The cast makes it one array value: `ANY (SELECT …)` would compare with each row.
        return column == any_(cast(array.scalar_subquery(), ARRAY(key.type)))
    return column.in_(keys)


def grouped_by_state(conn: Connection, query: Select[Any]) -> list[tuple[Any, list[Any]]]:
    """The values `query` selects (a value, then a state), grouped by state: each state and
    its values. On PostgreSQL one array per state comes back, so the driver builds no row
    per value."""
    if is_postgresql(conn):
        found = query.subquery()
        value, state = found.c
        by_state = select(state, func.array_agg(value, type_=ARRAY(value.type))).group_by(state)
        return [(recorded, values) for recorded, values in conn.execute(by_state).all()]
    grouped: dict[Any, list[Any]] = {}
    for value, recorded in conn.execute(query).all():
        grouped.setdefault(recorded, []).append(value)
    return list(grouped.items())


def without_jit(conn: Connection) -> None:
    """Turn PostgreSQL's JIT off for the transaction: the per-row probes inflate cost estimates
    past jit_above_cost, and compiling them took longer (~0.4 s) than running them (~25 ms).

    `synchronous_commit` stays on for a chunk's transaction. Off, its commit could be lost in
    a server crash after the task returned and Prefect cached its result per chunk: a retry
    would then skip a chunk left PROCESSING until that cache expires. And it buys nothing
    measurable: a commit's flush took 0.8-1.4 ms on or off (200 commits each, load 23),
    against seconds of writes per chunk. The stages need none: temporary tables write no WAL.
    """
    if is_postgresql(conn):
        conn.exec_driver_sql("SET LOCAL jit = off")
