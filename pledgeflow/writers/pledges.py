"""Pledges, upserted on (project_id, pledge_id).

Conflict rule: the row at the latest position (upload, then data row) wins; an earlier row
never overwrites a later one, whatever order chunks commit in, and a row equal to what is
stored is not written. A row a later row of the upload supersedes is not written, nor its
survey and inventory. The chunk holds a pledge (writes its survey and inventory) when the
stored pledge is its row's, or an equal one from an earlier position.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, delete, literal, tuple_, update

from pledgeflow.writers.counts import WriteTarget
from pledgeflow.writers.positions import write_positioned
from pledgeflow.writers.stages import (
    BATCH_ROWS,
    PLEDGE_COMPARED,
    STAGE_BACKER,
    STAGE_PLEDGE,
    STAGE_PRODUCT,
)
from schemas.tables import PLEDGE, ProductKind

PLEDGE_POSITION = ("upload_id", "source_row")


def drop_superseded_pledges(conn: Connection, target: WriteTarget) -> int:
    """Drop the staged pledges a later row of the upload supersedes; returns how many."""
    superseded = sorted(target.superseded_pledges)
    dropped = 0
    for start in range(0, len(superseded), BATCH_ROWS):
        part = superseded[start : start + BATCH_ROWS]
        dropped += conn.execute(
            delete(STAGE_PLEDGE).where(STAGE_PLEDGE.c.source_row.in_(part))
        ).rowcount
    return dropped


def write_pledges(conn: Connection, target: WriteTarget, staged: int) -> None:
    """Upsert the staged pledges by the position rule and record on each staged row the id and
    backer id of the pledge the chunk holds (none where a later row holds it)."""
    if not staged:
        return
    s, b, p = STAGE_PLEDGE, STAGE_BACKER, STAGE_PRODUCT
    values: dict[str, ColumnElement[Any]] = {
        "project_id": literal(target.project_id, PLEDGE.c.project_id.type),
        "pledge_id": s.c.pledge_id,
        "backer_id": b.c.id,
        "product_id": p.c.id,
        **{c: s.c[c] for c in ("amount", "shipping_amount", "currency", "status", "pledged_at")},
        "platform": literal(target.platform, PLEDGE.c.platform.type),
        "upload_id": literal(target.upload_id, PLEDGE.c.upload_id.type),
        "source_row": s.c.source_row,
    }
    source = s.join(b, b.c.email == s.c.email).outerjoin(
        p, and_(p.c.kind == ProductKind.REWARD, p.c.product_key == s.c.product_key)
    )
    handled = 0
    for advance in (True, False) if target.advance else (False,):
        if handled >= staged:
            return
        handled += write_positioned(
            conn,
            PLEDGE,
            s,
            key="pledge_id",
            conflict=("project_id", "pledge_id"),
            values=values,
            source=source,
            compared=PLEDGE_COMPARED,
            position=PLEDGE_POSITION,
            advance=advance,
        )
    if handled < staged:
        # Not written, still held: the stored position is this very row, or an earlier one
        # whose content is equal (an unchanged pledge, left unwritten).
        held = PLEDGE.c.project_id == target.project_id, PLEDGE.c.pledge_id == s.c.pledge_id
        not_later = tuple_(PLEDGE.c.upload_id, PLEDGE.c.source_row) <= tuple_(
            literal(target.upload_id, PLEDGE.c.upload_id.type), s.c.source_row
        )
        # One join (UPDATE … FROM) rather than a correlated lookup per column: on an
        # unchanged re-import this reads every held pledge once instead of twice.
        conn.execute(
            update(s)
            .values(id=PLEDGE.c.id, backer_id=PLEDGE.c.backer_id)
            .where(s.c.state.is_(None), *held, not_later)
        )
