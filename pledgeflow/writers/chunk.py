"""A chunk's write: its rows loaded into the stages, then one writer per table in dependency
order, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, String, cast, func, select

from pledgeflow.transform import ChunkFrames
from pledgeflow.writers.backers import insert_new_backers, rewrite_existing_backers
from pledgeflow.writers.counts import TableCounts, WriteCounts, WriteTarget, key_text
from pledgeflow.writers.dialects import grouped_by_state, without_jit
from pledgeflow.writers.inventory import InventoryWrite, line_key, write_inventory
from pledgeflow.writers.pledges import drop_superseded_pledges, write_pledges
from pledgeflow.writers.products import write_products
from pledgeflow.writers.stages import (
    STAGE_BACKER,
    STAGE_INVENTORY,
    STAGE_PLEDGE,
    STAGE_PRODUCT,
    StagedCopies,
    load_stages,
    prepare_stages,
)
from pledgeflow.writers.surveys import write_surveys

_OUTCOMES = {"c": "created", "u": "updated"}


def write_chunk(
    conn: Connection, target: WriteTarget, rows: ChunkFrames | StagedCopies, *, keep: bool = False
) -> tuple[WriteCounts, StagedCopies | None]:
    """Write all five tables for one chunk inside `conn`'s transaction; the counts, and with
    `keep` the COPY data the rows went as (for the row cache).

    `rows` is the chunk's frames, or the COPY data an earlier write of the same rows returned;
    either way the statements after loading are the same. Keys are written in sorted order so
    that concurrent chunks take row locks in one order and cannot deadlock."""
    without_jit(conn)
    prepare_stages(conn)
    sizes, copies = load_stages(conn, rows, keep=keep)
    products, backers, pledges, lines = (
        sizes[stage.name] for stage in (STAGE_PRODUCT, STAGE_BACKER, STAGE_PLEDGE, STAGE_INVENTORY)
    )
    if pledges and target.superseded_pledges:
        pledges -= drop_superseded_pledges(conn, target)
    write_products(conn, target, products)
    new_backers = insert_new_backers(conn, target, backers)
    write_pledges(conn, target, pledges)
    inventory = TableCounts()
    if pledges:
        write_surveys(conn)
        inventory = _line_outcomes(conn, write_inventory(conn, lines))
    rewrite_existing_backers(conn, target, backers, new_backers)
    s, product = STAGE_PLEDGE, STAGE_PRODUCT
    counts = WriteCounts(
        {
            "backer": _outcomes(conn, (target.shop,), STAGE_BACKER.c.email, STAGE_BACKER.c.state),
            # Keys as the chunk's frames name them: the kind as plain text.
            "product": _outcomes(
                conn,
                (target.project_id,),
                cast(product.c.kind, String),
                product.c.product_key,
                product.c.state,
            ),
            "pledge": _outcomes(conn, (target.project_id,), s.c.pledge_id, s.c.state),
            # The surveys of the pledges the chunk holds, by the pledge's id.
            "survey": _outcomes(conn, (), s.c.id, s.c.survey_state, held=s.c.id.isnot(None)),
            "inventory": inventory,
        }
    )
    return counts, copies


def _outcomes(
    conn: Connection,
    scope: tuple[Any, ...],
    *columns: ColumnElement[Any],
    held: ColumnElement[bool] | None = None,
) -> TableCounts:
    """Each staged key (after `scope`, the key's part the chunk shares) and its outcome, read
    from the state the writers recorded on its staged row (the last of `columns`).

    The database joins each key into the text its digest is made from (`join_key`), so one
    fetch of two columns brings every key back, with no tuple built per key."""
    *key, state = columns
    query = select(key_text(scope, *key), state)
    if held is not None:
        query = query.where(held)
    joined: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    for recorded, texts in grouped_by_state(conn, query):
        joined[_OUTCOMES.get(recorded, "unchanged")].extend(texts)
    return _counted(joined)


def _line_outcomes(conn: Connection, write: InventoryWrite) -> TableCounts:
    """The inventory's outcomes: the lines the upsert wrote, and every other held line (by
    `(survey, product)`, each once even were it staged twice) unchanged."""
    w = STAGE_INVENTORY
    held = w.c.survey_id.isnot(None)
    written = {_OUTCOMES[state]: texts for state, texts in write.written.items()}
    seen = {text for texts in written.values() for text in texts}
    unchanged: list[str] = []
    # Written lines are distinct, so when as many were written as are held, none is left
    # unchanged (a first import): a count spares building and reading every line's key.
    if conn.execute(select(func.count()).select_from(w).where(held)).scalar_one() > len(seen):
        keys = select(line_key(w.c.survey_id, w.c.product_id)).where(held).distinct()
        unchanged = [text for text in conn.execute(keys).scalars() if text not in seen]
    counts = _counted(
        {
            "created": written.get("created", []),
            "updated": written.get("updated", []),
            "unchanged": unchanged,
        }
    )
    counts.deleted = write.deleted
    return counts


def _counted(joined: dict[str, list[str]]) -> TableCounts:
    """Counts and keys from each outcome's keys (as their joined text)."""
    counts = TableCounts()
    for outcome, texts in joined.items():
        setattr(counts, outcome, len(texts))
        counts.keys.add_joined(outcome, texts)
    return counts
