"""A chunk's write: its rows loaded into the stages, then one writer per table in dependency
order, inside the caller's transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, Connection, String, cast, literal, select

from pledgeflow.distinct import KEY_SEPARATOR, join_key
from pledgeflow.transform import ChunkFrames
from pledgeflow.writers.backers import insert_new_backers, rewrite_existing_backers
from pledgeflow.writers.counts import TableCounts, WriteCounts, WriteTarget
from pledgeflow.writers.dialects import grouped_by_state, without_jit
from pledgeflow.writers.inventory import write_inventory
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
        deleted = write_inventory(conn, lines)
        # Lines by (survey, product): each line once, even were it staged twice.
        inventory = _outcomes(
            conn,
            (),
            STAGE_INVENTORY.c.survey_id,
            STAGE_INVENTORY.c.product_id,
            STAGE_INVENTORY.c.state,
            held=STAGE_INVENTORY.c.survey_id.isnot(None),
            distinct=True,
        )
        inventory.deleted = deleted
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
    distinct: bool = False,
) -> TableCounts:
    """Each staged key (after `scope`, the key's part the chunk shares) and its outcome, read
    from the state the writers recorded on its staged row (the last of `columns`).

    The database joins each key into the text its digest is made from (`join_key`), so one
    fetch of two columns brings every key back, with no tuple built per key."""
    *key, state = columns
    text: ColumnElement[str] = literal(join_key((*scope, "")), String)
    for i, part in enumerate(key):
        if i:
            text = text.concat(literal(KEY_SEPARATOR, String))
        text = text.concat(cast(part, String))
    query = select(text, state)
    if held is not None:
        query = query.where(held)
    if distinct:
        query = query.distinct()
    counts = TableCounts()
    joined: dict[str, list[str]] = {"created": [], "updated": [], "unchanged": []}
    for recorded, texts in grouped_by_state(conn, query):
        joined[_OUTCOMES.get(recorded, "unchanged")].extend(texts)
    for outcome, texts in joined.items():
        setattr(counts, outcome, len(texts))
        counts.keys.add_joined(outcome, texts)
    return counts
