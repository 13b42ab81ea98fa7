"""The corpus of real-shaped exports: each file imports every row, stored field by field as the
file says (dates in UTC, money with its currency, each pledge on its own tier)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.staging import stage_file
from tests.exports_corpus import CORPUS, INDIEGOGO, CorpusFile, Expected
from tests.helpers import run_plain, write_file

SHOP = "corpus.example.com"
STORED = text(
    """SELECT pl.pledge_id, b.email, pl.amount, pl.currency, pl.status, pl.pledged_at,
              s.responded_at, pl.shipping_amount, b.external_id, pl.product_id,
              pr.external_id AS tier_id, pr.price AS tier_price
       FROM pledge pl
       JOIN project j ON j.id = pl.project_id
       JOIN backer b ON b.id = pl.backer_id
       LEFT JOIN survey s ON s.pledge_id = pl.id
       LEFT JOIN product pr ON pr.id = pl.product_id
       WHERE j.shop = :shop AND j.name = :project"""
)


def stored_pledges(db: Engine, project: str) -> dict[str, Expected]:
    """Each pledge of a project as it is stored, in the corpus's terms."""
    with db.connect() as conn:
        rows = conn.execute(STORED, {"shop": SHOP, "project": project}).all()
    return {
        r.pledge_id: Expected(
            r.email,
            r.amount,
            r.currency,
            r.status,
            r.pledged_at,
            r.responded_at,
            r.shipping_amount,
            r.external_id,
            (r.tier_id, r.tier_price) if r.product_id is not None else None,
        )
        for r in rows
    }


def import_corpus(db: Engine, tmp_path: Path, corpus: CorpusFile, **overrides: str) -> Any:
    """Stage the file in small chunks and import it with the plain functions the flow wraps."""
    project = f"{corpus.name}-{uuid.uuid4().hex[:8]}"
    path = write_file(tmp_path, f"{corpus.name}.csv", corpus.render(**overrides))
    upload_id = stage_file(
        path, shop=SHOP, project=project, chunk_size=corpus.chunk_size, currency=corpus.currency
    )
    return project, run_plain(upload_id)


@pytest.mark.parametrize("corpus", CORPUS, ids=[c.name for c in CORPUS])
def test_real_shaped_export_is_stored_as_written(
    db: Engine, tmp_path: Path, corpus: CorpusFile
) -> None:
    project, result = import_corpus(db, tmp_path, corpus)

    assert result.status == "COMPLETED", result.errors
    assert (result.total_rows, result.imported_rows, result.rejected_rows) == (
        len(corpus.rows),
        len(corpus.rows),
        0,
    )
    detection = result.stats["detection"]
    assert (detection["platform"], detection["variant"]) == (corpus.platform, corpus.variant)
    decided = {d["column"]: d["style"] for d in detection["dates"].values()}
    assert decided == corpus.dates
    assert stored_pledges(db, project) == corpus.pledges


def test_day_and_month_are_ordered_once_for_the_whole_upload(db: Engine, tmp_path: Path) -> None:
    # Chunks of two rows: the first chunk's days are all 12 or less and would read month first
    # on their own; the day above 12 in the last chunk decides for every chunk.
    project, result = import_corpus(db, tmp_path, INDIEGOGO)

    assert result.total_chunks == 2
    assert result.stats["detection"]["dates"]["pledged_at"]["ambiguous"] is False
    stored = stored_pledges(db, project)
    assert stored["77001"].pledged_at == INDIEGOGO.pledges["77001"].pledged_at  # 1 March
    assert stored["77002"].pledged_at == INDIEGOGO.pledges["77002"].pledged_at  # 2 March
