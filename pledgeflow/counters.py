"""An upload's live counters, recounted from its chunks by each transaction that changes one."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, case, func, select, update

from schemas.tables import UPLOAD, CsvUploadChunk, UploadStatus


def refresh_upload_counters(conn: Connection, upload_id: int) -> None:
    """Set the upload's row and chunk counters from its chunks, inside `conn`'s transaction.

    Staging, starting an upload and each chunk's completion or failure call it in the
    transaction that changes them, so `pledgeflow status`, the web app and the progress
    artifact see the numbers move as chunks commit. A recount rather than `+ 1`: a chunk run
    twice (a retry, a reclaimed lease) is counted once by construction. The upload row is
    locked first, so on PostgreSQL the recount's snapshot is taken after every concurrent chunk
    that locked it before has committed, and no chunk writes a count missing another's. The
    lock is FOR NO KEY UPDATE, which a chunk's rows referencing the upload (FOR KEY SHARE, taken
    by their foreign keys) do not block: a FOR UPDATE here deadlocks two chunks of one upload.
    """
    conn.execute(
        select(UPLOAD.c.id).where(UPLOAD.c.id == upload_id).with_for_update(key_share=True)
    )
    chunk = CsvUploadChunk
    completed = chunk.status == UploadStatus.COMPLETED

    def total(value: Any) -> Any:
        return func.coalesce(func.sum(value), 0)

    # Labelled as the upload's columns they set.
    counts = conn.execute(
        select(
            func.count().label("total_chunks"),
            total(chunk.row_count).label("total_rows"),
            total(case((completed, 1), else_=0)).label("completed_chunks"),
            total(case((chunk.status == UploadStatus.FAILED, 1), else_=0)).label("failed_chunks"),
            total(case((completed, chunk.imported_rows), else_=0)).label("imported_rows"),
            total(case((completed, chunk.rejected_rows), else_=0)).label("rejected_rows"),
        ).where(chunk.upload_id == upload_id)
    ).one()
    conn.execute(update(UPLOAD).where(UPLOAD.c.id == upload_id).values(**counts._mapping))
