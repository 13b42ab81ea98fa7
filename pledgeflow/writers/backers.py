"""Backers, upserted on (shop, email).

Conflict rule: name, phone, country and platform id come from the row at the latest position
(upload, then data row); an earlier row never overwrites a later one, and a row equal to what
is stored is not written. A row a later row of the upload supersedes only creates its backer if
missing.

Chunks of an upload share backers. New ones are inserted first (their ids are what the pledges
need) and existing ones are read without a lock; the existing ones are advanced or rewritten
last (`rewrite_existing_backers`), so a chunk holds their locks only for the end of its
transaction instead of making every chunk that shares one wait for its whole write.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, literal, select, update

from pledgeflow.writers.counts import WriteTarget
from pledgeflow.writers.dialects import created_flag, record_written, upsert_into
from pledgeflow.writers.positions import write_positioned
from pledgeflow.writers.stages import BACKER_COMPARED, BATCH_ROWS, STAGE_BACKER
from schemas.tables import BACKER

BACKER_POSITION = ("source_upload_id", "source_row")


def _values(target: WriteTarget) -> dict[str, ColumnElement[Any]]:
    s = STAGE_BACKER
    return {
        "shop": literal(target.shop, BACKER.c.shop.type),
        **{c: s.c[c] for c in ("email", *BACKER_COMPARED)},
        "source_upload_id": literal(target.upload_id, BACKER.c.source_upload_id.type),
        "source_row": s.c.source_row,
    }


def insert_new_backers(conn: Connection, target: WriteTarget, staged: int) -> int:
    """Insert the staged backers not stored yet and record every staged backer's id; returns
    how many were created."""
    if not staged:
        return 0
    s = STAGE_BACKER
    values = _values(target)
    insert = (
        upsert_into(conn, BACKER)
        .from_select(
            list(values),
            select(*values.values()).where(s.c.state.is_(None)).order_by(s.c.email),
        )
        .on_conflict_do_nothing(index_elements=["shop", "email"])
        .returning(BACKER.c.id, BACKER.c.email, created_flag(conn, BACKER))
    )
    created = record_written(
        conn, insert, s, on={"email": "email"}, copied={"id": "id"}, state="state", mark="c"
    )
    if created < staged:
        # A correlated lookup, one index probe per staged row, rather than `UPDATE … FROM`:
        # the join's plan rests on the shop's row estimate, which a fresh table puts at a
        # handful (estimated 15, actual 28,443), and then it nested-loops over all of them
        # for every staged row (11 million comparisons a chunk, quadratic in the table).
        stored = select(BACKER.c.id).where(
            BACKER.c.shop == target.shop, BACKER.c.email == s.c.email
        )
        conn.execute(update(s).values(id=stored.scalar_subquery()).where(s.c.state.is_(None)))
    return created


def rewrite_existing_backers(
    conn: Connection, target: WriteTarget, staged: int, created: int
) -> None:
    """Apply the position rule to the staged backers that existed before the chunk."""
    if created >= staged:
        return
    s = STAGE_BACKER
    settled = created
    superseded = sorted(target.superseded_backers)
    for start in range(0, len(superseded), BATCH_ROWS):
        settled += conn.execute(
            update(s)
            .values(state="s")
            .where(s.c.state.is_(None), s.c.source_row.in_(superseded[start : start + BATCH_ROWS]))
        ).rowcount
    for advance in (True, False) if target.advance else (False,):
        if settled >= staged:
            return
        settled += write_positioned(
            conn,
            BACKER,
            s,
            key="email",
            conflict=("shop", "email"),
            values=_values(target),
            source=s,
            compared=BACKER_COMPARED,
            position=BACKER_POSITION,
            advance=advance,
        )
