"""Read back what an upload rejected."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from sqlalchemy import select

from pledgeflow.database import get_engine
from schemas.tables import CsvUploadChunk


def rejected_rows(upload_id: int) -> Iterator[dict[str, Any]]:
    """Every rejected cell of an upload in file order, one chunk in memory at a time."""
    engine = get_engine()
    with engine.connect() as conn:
        ids = (
            conn.execute(
                select(CsvUploadChunk.id)
                .where(CsvUploadChunk.upload_id == upload_id)
                .order_by(CsvUploadChunk.chunk_index)
            )
            .scalars()
            .all()
        )
    for chunk_id in ids:
        with engine.connect() as conn:
            errors = conn.execute(
                select(CsvUploadChunk.errors).where(CsvUploadChunk.id == chunk_id)
            ).scalar()
        yield from (errors or {}).get("rejected", [])
