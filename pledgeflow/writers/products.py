"""Products, upserted on (project_id, kind, product_key).

Conflict rule: the name a product was created with stays; a missing external id, price or
currency is filled in from the file, and values already stored win over later files.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, and_, func, literal, or_, select, update

from pledgeflow.writers.counts import WriteTarget
from pledgeflow.writers.dialects import created_flag, record_written, upsert_into
from pledgeflow.writers.stages import PRODUCT_FILLED, STAGE_PRODUCT
from schemas.tables import PRODUCT

PRODUCT_KEY = ("project_id", "kind", "product_key")


def _fills(stored: Any, new: Any) -> ColumnElement[bool]:
    """The file fills a blank of the stored product (both are column collections)."""
    return or_(*(and_(stored[c].is_(None), new[c].isnot(None)) for c in PRODUCT_FILLED))


def write_products(conn: Connection, target: WriteTarget, staged: int) -> None:
    """Upsert the staged products and record each one's id and outcome on its staged row.

    A product needs a write only when it is new or the file fills a blank of it; the others
    are left unlocked, so chunks sharing the upload's products do not queue on them."""
    if not staged:
        return
    s = STAGE_PRODUCT
    stored = and_(
        PRODUCT.c.project_id == target.project_id,
        PRODUCT.c.kind == s.c.kind,
        PRODUCT.c.product_key == s.c.product_key,
    )
    conn.execute(update(s).values(id=PRODUCT.c.id, todo=_fills(PRODUCT.c, s.c)).where(stored))
    upsert = upsert_into(conn, PRODUCT).from_select(
        [*PRODUCT_KEY, "name", *PRODUCT_FILLED],
        select(
            literal(target.project_id, PRODUCT.c.project_id.type),
            s.c.kind,
            s.c.product_key,
            s.c.name,
            *(s.c[c] for c in PRODUCT_FILLED),
        )
        .where(or_(s.c.id.is_(None), s.c.todo))
        .order_by(s.c.kind, s.c.product_key),
    )
    upsert = upsert.on_conflict_do_update(
        index_elements=list(PRODUCT_KEY),
        set_={c: func.coalesce(PRODUCT.c[c], upsert.excluded[c]) for c in PRODUCT_FILLED},
        where=_fills(PRODUCT.c, upsert.excluded),
    ).returning(PRODUCT.c.id, PRODUCT.c.kind, PRODUCT.c.product_key, created_flag(conn, PRODUCT))
    written = record_written(
        conn,
        upsert,
        s,
        on={"kind": "kind", "product_key": "product_key"},
        copied={"id": "id"},
        state="state",
        mark="u",
    )
    if written < staged:  # created by a chunk that committed since the first read
        conn.execute(
            update(s)
            .values(id=select(PRODUCT.c.id).where(stored).scalar_subquery())
            .where(s.c.state.is_(None))
        )
