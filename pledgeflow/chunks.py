"""Process one chunk: claim it, map and validate its rows, write them in one transaction."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, Row, Text, cast, func, or_, select, update
from sqlalchemy.exc import DBAPIError

from pledgeflow.database import get_engine, transaction
from pledgeflow.failures import ChunkBusyError, ChunkDataError, is_transient
from pledgeflow.row_cache import ChunkRows, RowCache
from pledgeflow.settings import get_settings
from pledgeflow.staged_upserts import StagedCopies, copy_encoding, write_chunk_staged
from pledgeflow.transform import ChunkFrames, build_frames
from pledgeflow.upserts import WriteCounts, WriteTarget, write_chunk
from schemas.layout import Layout
from schemas.mappings import ColumnMapping, MappingError
from schemas.platforms import UnknownLayoutError, UnsupportedPlatformError, resolve_layout
from schemas.tables import CsvUpload, CsvUploadChunk, Project, UploadStatus

logger = logging.getLogger(__name__)


class ChunkSummary(BaseModel):
    """What became of one chunk; small enough to be a task result."""

    chunk_id: int
    chunk_index: int
    status: str
    imported_rows: int = 0
    rejected_rows: int = 0
    claimed: bool = True
    error: str | None = None


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def claimable(lease_seconds: int) -> Any:
    """Chunk states a run may take: pending, failed, or processing past its lease."""
    expired = now() - timedelta(seconds=lease_seconds)
    chunk = CsvUploadChunk
    return or_(
        chunk.status.in_([UploadStatus.PENDING, UploadStatus.FAILED]),
        (chunk.status == UploadStatus.PROCESSING) & (chunk.started_at < expired),
    )


def claim_chunk(chunk_id: int, lease_seconds: int | None = None) -> int | None:
    """Atomically move a claimable chunk to PROCESSING and commit; return its index or None."""
    lease = lease_seconds or get_settings().chunk_lease_seconds
    with transaction() as conn:
        row = conn.execute(
            update(CsvUploadChunk)
            .where(CsvUploadChunk.id == chunk_id, claimable(lease))
            .values(
                status=UploadStatus.PROCESSING,
                started_at=now(),
                completed_at=None,
                attempts=CsvUploadChunk.attempts + 1,
            )
            .returning(CsvUploadChunk.chunk_index)
        ).first()
    return None if row is None else int(row.chunk_index)


def process_chunk(chunk_id: int) -> ChunkSummary:
    """Claim a chunk and import it; the rows and its COMPLETED state commit together."""
    index = claim_chunk(chunk_id)
    if index is None:
        with get_engine().connect() as conn:
            status = conn.execute(
                select(CsvUploadChunk.chunk_index, CsvUploadChunk.status).where(
                    CsvUploadChunk.id == chunk_id
                )
            ).first()
        if status is None:
            raise ChunkDataError("unknown_chunk", f"chunk {chunk_id} does not exist")
        if status.status != UploadStatus.COMPLETED:
            raise ChunkBusyError(f"chunk {chunk_id} is being processed by another run")
        logger.info("chunk %s already completed, skipped", chunk_id)
        return ChunkSummary(
            chunk_id=chunk_id,
            chunk_index=status.chunk_index,
            status=UploadStatus.COMPLETED.value,
            claimed=False,
        )
    started = time.perf_counter()
    try:
        summary = _import_claimed(chunk_id, started)
    except ChunkDataError as exc:
        mark_chunk_failed(chunk_id, exc.code, str(exc))
        raise
    except Exception as exc:
        code, message = _describe(exc)
        mark_chunk_failed(chunk_id, code, message)
        if is_transient(exc):
            raise  # Prefect retries it; the original type drives the retry condition
        # A database error's text carries the whole statement: run history gets the summary.
        raise ChunkDataError(code, f"chunk {chunk_id}: {message}") from exc
    logger.info(
        "chunk %s (index %s) completed: %s imported, %s rejected in %.2fs",
        chunk_id,
        index,
        summary.imported_rows,
        summary.rejected_rows,
        time.perf_counter() - started,
    )
    return summary


def _describe(exc: BaseException) -> tuple[str, str]:
    """A reason code and a one-line message; database errors keep only the server's message."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        code = "transient_database_error" if is_transient(exc) else "database_error"
        sqlstate = getattr(exc.orig, "sqlstate", None)
        first_line = (str(exc.orig).splitlines() or [type(exc.orig).__name__])[0]
        return code, f"{first_line[:400]} (SQLSTATE {sqlstate})" if sqlstate else first_line[:400]
    return type(exc).__name__, (str(exc).splitlines() or [""])[0][:400]


def chunk_layout(headers: object, platform: str | None, mapping: dict[str, Any] | None) -> Layout:
    """The layout a chunk's rows are read with: its upload's mapping, else its platform."""
    if not isinstance(headers, list):
        raise ChunkDataError("malformed_chunk", "chunk data must be {headers: [...], rows: [...]}")
    try:
        column_mapping = ColumnMapping.from_dict(mapping) if mapping else None
        return resolve_layout(
            tuple(str(h) for h in headers),
            None if column_mapping else platform,
            column_mapping,
        )
    except (UnknownLayoutError, UnsupportedPlatformError, MappingError) as exc:
        raise ChunkDataError(exc.code, str(exc)) from exc


def _writes_staged(dialect: str) -> bool:
    return dialect == "postgresql" and get_settings().write_path == "auto"


# sha256 of the chunk's JSON as stored, computed by PostgreSQL: a cache hit never transfers it.
DATA_DIGEST = func.sha256(func.convert_to(cast(CsvUploadChunk.data, Text), "UTF8"))


def _import_claimed(chunk_id: int, started: float) -> ChunkSummary:
    engine = get_engine()
    cache = RowCache.from_settings() if _writes_staged(engine.dialect.name) else None
    with engine.connect() as conn:
        chunk = conn.execute(
            select(
                DATA_DIGEST.label("digest") if cache else CsvUploadChunk.data,
                CsvUploadChunk.first_row,
                CsvUploadChunk.chunk_index,
                CsvUploadChunk.upload_id,
                CsvUpload.shop,
                CsvUpload.project_id,
                CsvUpload.platform,
                CsvUpload.mapping,
                Project.currency,
            )
            .join(CsvUpload, CsvUpload.id == CsvUploadChunk.upload_id)
            .join(Project, Project.id == CsvUpload.project_id)
            .where(CsvUploadChunk.id == chunk_id)
        ).one()
        encoding = copy_encoding(conn) if cache else ""

    def mapped() -> ChunkRows:
        if cache is None:
            data = chunk.data
        else:
            with engine.connect() as conn:
                data = conn.scalar(select(CsvUploadChunk.data).where(CsvUploadChunk.id == chunk_id))
        return _mapped(data, chunk.platform, chunk.mapping, chunk.first_row, chunk.currency)

    key = entry = None
    if cache is not None:
        key = cache.key(
            data_digest=chunk.digest,
            first_row=chunk.first_row,
            shop=chunk.shop,
            platform=chunk.platform,
            mapping=chunk.mapping,
            currency=chunk.currency,
            encoding=encoding,
        )
        entry = cache.get(key)
    ready = entry or mapped()
    try:
        copies = _complete(engine, chunk_id, chunk, ready, started, keep=cache is not None)
    except Exception as exc:
        if cache is None or key is None or entry is None or is_transient(exc):
            raise
        # The database refused what the cache held: forget it and map the chunk instead.
        logger.info("chunk %s: cached rows refused (%s), mapping it", chunk_id, type(exc).__name__)
        cache.forget(key)
        entry = None
        ready = mapped()
        copies = _complete(engine, chunk_id, chunk, ready, started, keep=True)
    if cache is not None and key is not None and entry is None and copies is not None:
        cache.put(key, ready, copies)
    return ChunkSummary(
        chunk_id=chunk_id,
        chunk_index=chunk.chunk_index,
        status=UploadStatus.COMPLETED.value,
        imported_rows=ready.imported_rows,
        rejected_rows=ready.rejected_rows,
    )


def _complete(
    engine: Engine, chunk_id: int, chunk: Row[Any], ready: ChunkRows, started: float, *, keep: bool
) -> StagedCopies | None:
    """Write the chunk's rows and mark it COMPLETED in one transaction; return the COPY data
    its rows went as, when `keep` asks for it and the staged path wrote them."""
    target = WriteTarget(
        shop=chunk.shop,
        project_id=chunk.project_id,
        upload_id=chunk.upload_id,
        platform=ready.platform,
    )
    with transaction(engine) as tx:
        counts, copies = _write(tx, target, ready.rows, keep=keep)
        tx.execute(
            update(CsvUploadChunk)
            .where(CsvUploadChunk.id == chunk_id)
            .values(
                status=UploadStatus.COMPLETED,
                imported_rows=ready.imported_rows,
                rejected_rows=ready.rejected_rows,
                errors={"rejected": ready.rejected, "error": None},
                stats={
                    "tables": counts.as_dict(),
                    "by_code": dict(Counter(r["code"] for r in ready.rejected)),
                    "seconds": round(time.perf_counter() - started, 4),
                    # Which process wrote it: ops can tell workers (or Dask processes) apart.
                    "worker": f"{socket.gethostname()}:{os.getpid()}",
                    "rows_from_cache": isinstance(ready.rows, StagedCopies),
                },
                completed_at=now(),
            )
        )
    return copies


def _mapped(
    data: object,
    platform: str | None,
    mapping: dict[str, Any] | None,
    first_row: int,
    currency: str | None,
) -> ChunkRows:
    """The chunk's rows mapped and validated, with the platform its layout belongs to."""
    headers = data.get("headers") if isinstance(data, dict) else None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(headers, list) or not isinstance(rows, list):
        raise ChunkDataError("malformed_chunk", "chunk data must be {headers: [...], rows: [...]}")
    layout = chunk_layout(headers, platform, mapping)
    return ChunkRows.mapped(
        build_frames(headers, rows, first_row, layout, currency), layout.platform
    )


def write_frames(conn: Connection, target: WriteTarget, frames: ChunkFrames) -> WriteCounts:
    """Write a chunk's frames on the path the settings and the database call for: COPY and
    set-based upserts on PostgreSQL, multi-row upserts elsewhere (same rules, same counts)."""
    return _write(conn, target, frames, keep=False)[0]


def _write(
    conn: Connection, target: WriteTarget, rows: ChunkFrames | StagedCopies, *, keep: bool
) -> tuple[WriteCounts, StagedCopies | None]:
    if isinstance(rows, StagedCopies) or _writes_staged(conn.dialect.name):
        return write_chunk_staged(conn, target, rows, keep=keep)
    return write_chunk(conn, target, rows), None


def mark_chunk_failed(chunk_id: int, code: str, message: str) -> None:
    """Record that a chunk could not be processed as a whole; its rows were rolled back."""
    with transaction() as conn:
        conn.execute(
            update(CsvUploadChunk)
            .where(CsvUploadChunk.id == chunk_id)
            .values(
                status=UploadStatus.FAILED,
                errors={"rejected": [], "error": {"code": code, "message": message}},
                imported_rows=0,
                rejected_rows=0,
                completed_at=now(),
            )
        )
    logger.warning("chunk %s failed: %s", chunk_id, code)


def fail_unstarted_chunks(errors: dict[int, str]) -> int:
    """Mark FAILED each chunk still PENDING whose task failed before claiming it.

    Such a task failed in the orchestration around it (a lost Redis lock or result store),
    not on its rows; recording it lets the upload end FAILED and a retry pick it up.
    """
    marked = 0
    for chunk_id, message in sorted(errors.items()):
        with transaction() as conn:
            marked += conn.execute(
                update(CsvUploadChunk)
                .where(
                    CsvUploadChunk.id == chunk_id,
                    CsvUploadChunk.status == UploadStatus.PENDING,
                )
                .values(
                    status=UploadStatus.FAILED,
                    errors={
                        "rejected": [],
                        "error": {"code": "task_failed", "message": message[:400]},
                    },
                    completed_at=now(),
                )
            ).rowcount
    return marked
