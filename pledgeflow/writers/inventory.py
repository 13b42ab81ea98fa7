"""Inventory lines of held pledges, upserted on (survey_id, product_id).

Conflict rule: the latest row is the whole truth for its pledge: lines it lacks are deleted (a
dropped add-on disappears), changed quantities are updated, equal ones are not written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, delete, exists, select, update

from pledgeflow.writers.counts import key_text
from pledgeflow.writers.dialects import created_flag, in_staged, upsert_into, written_keys
from pledgeflow.writers.guards import differs
from pledgeflow.writers.stages import STAGE_INVENTORY, STAGE_PLEDGE, STAGE_PRODUCT
from schemas.tables import INVENTORY


@dataclass
class InventoryWrite:
    """What `write_inventory` did: the lines it deleted, and the keys (`line_key`) of the lines
    it wrote by state (`c` created, `u` updated); a held line in neither was unchanged."""

    deleted: int = 0
    written: dict[str, list[str]] = field(default_factory=dict)


def line_key(survey_id: Any, product_id: Any) -> ColumnElement[str]:
    """A line's key as the text its digest is made from: survey id, then product id."""
    return key_text((), survey_id, product_id)


def write_inventory(conn: Connection, staged: int) -> InventoryWrite:
    """Make each held pledge's inventory equal the staged quantities; what it deleted and wrote.

    Which lines it wrote comes back from the upsert itself rather than being recorded on the
    staged lines (a join back to the stage and a rewrite of each of its rows): nothing after
    it reads the lines' outcomes but the counts."""
    w, s, p = STAGE_INVENTORY, STAGE_PLEDGE, STAGE_PRODUCT
    if staged:
        conn.execute(
            update(w)
            .values(survey_id=s.c.survey_id, product_id=p.c.id)
            .where(
                s.c.pledge_id == w.c.pledge_key,
                s.c.survey_id.isnot(None),
                p.c.kind == w.c.product_kind,
                p.c.product_key == w.c.product_key,
            )
        )
    # Surveys that existed before this chunk may carry lines the latest row no longer has, and
    # lines equal to the staged ones. Where every held survey is new (a first import), there is
    # nothing to delete or compare: one look at the stage spares both statements.
    old_surveys = select(s.c.survey_id).where(
        s.c.survey_id.isnot(None), s.c.survey_state.is_distinct_from("c")
    )
    if not conn.execute(select(old_surveys.exists())).scalar_one():
        deleted = 0
    else:
        wanted = exists().where(
            w.c.survey_id == INVENTORY.c.survey_id, w.c.product_id == INVENTORY.c.product_id
        )
        deleted = int(
            conn.execute(
                delete(INVENTORY).where(
                    in_staged(conn, INVENTORY.c.survey_id, old_surveys), ~wanted
                )
            ).rowcount
        )
        if staged:
            # Compare first, so an unchanged line is read, not locked. A correlated lookup,
            # one index probe per staged line (a line without a stored one gets NULL): as a
            # join, the planner hashed every stored line of the table for each chunk.
            stored = select(INVENTORY.c.quantity == w.c.quantity).where(
                INVENTORY.c.survey_id == w.c.survey_id, INVENTORY.c.product_id == w.c.product_id
            )
            conn.execute(
                update(w).values(same=stored.scalar_subquery()).where(w.c.survey_id.isnot(None))
            )
    if not staged:
        return InventoryWrite(deleted)
    upsert = upsert_into(conn, INVENTORY).from_select(
        ["survey_id", "product_id", "quantity"],
        select(w.c.survey_id, w.c.product_id, w.c.quantity)
        .where(w.c.survey_id.isnot(None), w.c.same.isnot(True))
        .order_by(w.c.survey_id, w.c.product_id),
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=["survey_id", "product_id"],
        set_={"quantity": upsert.excluded.quantity},
        where=differs(INVENTORY.c, upsert.excluded, ["quantity"]),
    ).returning(
        line_key(INVENTORY.c.survey_id, INVENTORY.c.product_id).label("key"),
        created_flag(conn, INVENTORY),
    )
    return InventoryWrite(deleted, written_keys(conn, upsert, mark="u"))
