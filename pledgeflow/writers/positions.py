"""The position rule, for the tables that keep the position (upload, data row) of the row that
last changed them: backers and pledges.

Only a row from a later position changes a stored row; a row equal to what is stored is not
written, except that while `WriteTarget.advance` asks for it, its position still moves forward
(an older upload of the project may still write, and its rows must not win over this one's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, FromClause, Table, and_, select, tuple_

from pledgeflow.writers.dialects import created_flag, record_written, upsert_into
from pledgeflow.writers.guards import differs


def write_positioned(
    conn: Connection,
    table: Table,
    stage: Table,
    *,
    key: str,
    conflict: Sequence[str],
    values: Mapping[str, ColumnElement[Any]],
    source: FromClause,
    compared: Sequence[str],
    position: Sequence[str],
    advance: bool,
) -> int:
    """One statement of the position rule over the staged rows not yet handled (`state IS
    NULL`); returns how many it recorded. With `advance`: insert new keys and move the position
    of rows from an earlier position whose content is equal (marked `a`, unchanged). Without:
    rewrite the rows left over that come from an earlier position and differ (marked `u`). The
    first statement locks every existing key it reads, in key order, so the second sees the
    rows exactly as the first classified them."""
    upsert = upsert_into(conn, table).from_select(
        list(values),
        select(*values.values())
        .select_from(source)
        .where(stage.c.state.is_(None))
        .order_by(stage.c[key]),
    )
    new = upsert.excluded
    later = tuple_(*(new[c] for c in position)) > tuple_(*(table.c[c] for c in position))
    if advance:
        assign: Sequence[str] = position
        guard = ~differs(table.c, new, compared)
        mark = "a"
    else:
        assign = (*compared, *position)
        guard = differs(table.c, new, compared)
        mark = "u"
    # A pledge keeps the backer id it was written with; surveys take it from there.
    kept = ("id", "backer_id") if "backer_id" in values else ("id",)
    upsert = upsert.on_conflict_do_update(
        index_elements=list(conflict),
        set_={c: new[c] for c in assign},
        where=and_(later, guard),
    ).returning(*(table.c[c] for c in kept), table.c[key], created_flag(conn, table))
    return record_written(
        conn, upsert, stage, on={key: key}, copied={c: c for c in kept}, state="state", mark=mark
    )
