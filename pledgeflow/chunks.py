"""Process one chunk: claim it, map and validate its rows, write them in one transaction."""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, Engine, Row, select
from sqlalchemy.exc import DBAPIError

from pledgeflow.allocators import release_freed_memory, tune_allocators
from pledgeflow.chunk_digest import (
    as_data_digest,
    chunk_digest,
    chunk_inputs,
    data_digest_column,
    inputs_digest,
)
from pledgeflow.chunk_rows import ChunkRows, answers_by_value, map_chunk, read_chunk_data
from pledgeflow.chunk_skip import skip_unchanged
from pledgeflow.collector import freeze_loaded_objects
from pledgeflow.counters import refresh_upload_counters
from pledgeflow.database import get_engine, transaction
from pledgeflow.failures import ChunkBusyError, ChunkDataError, is_transient
from pledgeflow.retries import retry_transient, transient_retrying
from pledgeflow.row_cache import RowCache
from pledgeflow.settings import get_settings
from pledgeflow.settlement import write_mode
from pledgeflow.status import claim_chunk, complete_chunk, local_owner, mark_chunk_failed
from pledgeflow.transform import ChunkFrames, rows_by_code
from pledgeflow.upload_dates import stored_dates
from pledgeflow.writers import (
    StagedCopies,
    WriteCounts,
    WriteTarget,
    copy_encoding,
    loads_by_copy,
    write_chunk,
)
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

    @classmethod
    def completed(cls, chunk_id: int, chunk_index: int, **counts: Any) -> ChunkSummary:
        """A chunk that is COMPLETED, with its `imported_rows` and `rejected_rows`."""
        return cls(
            chunk_id=chunk_id,
            chunk_index=chunk_index,
            status=UploadStatus.COMPLETED.value,
            **counts,
        )


def process_chunk(chunk_id: int, owner: str | None = None) -> ChunkSummary:
    """Claim a chunk under `owner` and import it; the rows and its COMPLETED state commit
    together.

    Transient database errors are retried (claim included: the owner takes its own chunk
    back) for `PLEDGEFLOW_TRANSIENT_RETRY_SECONDS`. Once that budget is spent the chunk is
    marked FAILED with the error, in a transaction of its own retried the same way, so a
    retry of the upload can take it at once.
    """
    owner = owner or local_owner()
    freeze_loaded_objects()
    tune_allocators()
    try:
        return transient_retrying()(_claim_and_import, chunk_id, owner)
    except (ChunkDataError, ChunkBusyError):
        raise  # recorded already, or not this run's chunk to record
    except Exception as exc:
        code, message = describe_error(exc)
        retry_transient(mark_chunk_failed)(chunk_id, code, message, owner)
        if is_transient(exc):
            raise  # the original type tells Prefect and the logs what happened
        raise ChunkDataError(code, message) from exc
    finally:
        # The chunk's rows, frames and COPY data are freed: return them before the next.
        release_freed_memory()


def _claim_and_import(chunk_id: int, owner: str) -> ChunkSummary:
    index = claim_chunk(chunk_id, owner=owner)
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
        # Also the way back from a commit whose acknowledgement was lost: its rows are in.
        logger.info("chunk %s already completed, skipped", chunk_id)
        return ChunkSummary.completed(chunk_id, status.chunk_index, claimed=False)
    started = time.perf_counter()
    try:
        summary = _import_claimed(chunk_id, started)
    except ChunkDataError as exc:
        mark_chunk_failed(chunk_id, exc.code, str(exc), owner)
        raise
    except Exception as exc:
        if is_transient(exc):
            raise  # retried by process_chunk, which keeps the claim meanwhile
        code, message = describe_error(exc)
        mark_chunk_failed(chunk_id, code, message, owner)
        # A database error's text carries the whole statement: run history gets the summary.
        raise ChunkDataError(code, message) from exc
    logger.info(
        "chunk %s (index %s) completed: %s imported, %s rejected in %.2fs",
        chunk_id,
        index,
        summary.imported_rows,
        summary.rejected_rows,
        time.perf_counter() - started,
    )
    return summary


def describe_error(exc: BaseException) -> tuple[str, str]:
    """A reason code and a one-line message; database errors keep only the server's message."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        code = "transient_database_error" if is_transient(exc) else "database_error"
        sqlstate = getattr(exc.orig, "sqlstate", None)
        first_line = (str(exc.orig).splitlines() or [type(exc.orig).__name__])[0]
        return code, f"{first_line[:400]} (SQLSTATE {sqlstate})" if sqlstate else first_line[:400]
    return type(exc).__name__, (str(exc).splitlines() or [""])[0][:400]


def _import_claimed(chunk_id: int, started: float) -> ChunkSummary:
    engine = get_engine()
    cache = RowCache.from_settings() if loads_by_copy(engine.dialect.name) else None
    with engine.connect() as conn:
        chunk = conn.execute(
            select(
                # Computed by PostgreSQL: a skipped or cached chunk never transfers its data.
                data_digest_column(engine.dialect.name).label("digest"),
                CsvUploadChunk.first_row,
                CsvUploadChunk.chunk_index,
                CsvUploadChunk.upload_id,
                CsvUpload.shop,
                CsvUpload.project_id,
                CsvUpload.platform,
                CsvUpload.mapping,
                CsvUpload.stats,
                Project.currency,
                CsvUploadChunk.superseded,
            )
            .join(CsvUpload, CsvUpload.id == CsvUploadChunk.upload_id)
            .join(Project, Project.id == CsvUpload.project_id)
            .where(CsvUploadChunk.id == chunk_id)
        ).one()
        encoding = copy_encoding(conn) if cache else ""
        mode = write_mode(conn, chunk.upload_id, chunk.project_id, chunk.superseded)
    dates = stored_dates(chunk.stats)
    value_answers = answers_by_value(chunk.stats)
    inputs = chunk_inputs(
        data_digest=as_data_digest(chunk.digest),
        first_row=chunk.first_row,
        shop=chunk.shop,
        platform=chunk.platform,
        mapping=chunk.mapping,
        currency=chunk.currency,
        dates={name: column.as_dict() for name, column in dates.items()},
        value_answers=value_answers,
    )
    digest = chunk_digest(inputs, chunk.superseded)
    if get_settings().skip_unchanged_chunks and not mode["advance"]:
        with transaction(engine) as tx:
            skipped = skip_unchanged(
                tx,
                chunk_id=chunk_id,
                upload_id=chunk.upload_id,
                project_id=chunk.project_id,
                shop=chunk.shop,
                digest=digest,
                started=started,
            )
        if skipped is not None:
            return ChunkSummary.completed(
                chunk_id,
                chunk.chunk_index,
                imported_rows=skipped.imported_rows,
                rejected_rows=skipped.rejected_rows,
            )

    def mapped() -> ChunkRows:
        with engine.connect() as conn:
            data = read_chunk_data(conn, chunk_id)
        return map_chunk(
            data,
            chunk.platform,
            chunk.mapping,
            chunk.first_row,
            chunk.currency,
            dates,
            value_answers,
        )

    key = entry = None
    if cache is not None:
        key = cache.key_of(inputs, encoding)
        entry = cache.get(key)
    ready = entry or mapped()
    complete = functools.partial(
        _complete,
        engine,
        chunk_id,
        chunk,
        mode,
        started=started,
        digest=digest,
        inputs=inputs_digest(inputs),
    )
    try:
        copies = complete(ready, keep=cache is not None)
    except Exception as exc:
        if cache is None or key is None or entry is None or is_transient(exc):
            raise
        # The database refused what the cache held: forget it and map the chunk instead.
        logger.info("chunk %s: cached rows refused (%s), mapping it", chunk_id, type(exc).__name__)
        cache.forget(key)
        entry = None
        ready = mapped()
        copies = complete(ready, keep=True)
    if cache is not None and key is not None and entry is None and copies is not None:
        cache.put(key, ready, copies)
    return ChunkSummary.completed(
        chunk_id,
        chunk.chunk_index,
        imported_rows=ready.imported_rows,
        rejected_rows=ready.rejected_rows,
    )


def _complete(
    engine: Engine,
    chunk_id: int,
    chunk: Row[Any],
    mode: dict[str, Any],
    ready: ChunkRows,
    *,
    started: float,
    digest: str,
    inputs: str,
    keep: bool,
) -> StagedCopies | None:
    """Write the chunk's rows and mark it COMPLETED, with the `digest` of its inputs, in one
    transaction; return the COPY data its rows went as, when `keep` asks for it and the staged
    path wrote them. `mode` is how the upload's settlement says to write them
    (`settlement.write_mode`)."""
    target = WriteTarget(
        shop=chunk.shop,
        project_id=chunk.project_id,
        upload_id=chunk.upload_id,
        platform=ready.platform,
        **mode,
    )
    with transaction(engine) as tx:
        counts, copies = write_chunk(tx, target, ready.rows, keep=keep)
        complete_chunk(
            tx,
            chunk_id,
            imported_rows=ready.imported_rows,
            rejected=ready.rejected,
            rejected_rows=ready.rejected_rows,
            stats={
                "tables": counts.as_dict(),
                "keys": counts.keys_packed(chunk.project_id),
                "by_code": rows_by_code(ready.rejected),
                "warnings": ready.warnings,
                "seconds": round(time.perf_counter() - started, 4),
                # Which process wrote it: ops can tell workers (or Dask processes) apart.
                "worker": f"{socket.gethostname()}:{os.getpid()}",
                "rows_from_cache": isinstance(ready.rows, StagedCopies),
                # Settling a later upload reads which rows this chunk rejected by it.
                "inputs": inputs,
            },
            digest=digest,
        )
        refresh_upload_counters(tx, chunk.upload_id)
    return copies


def write_frames(conn: Connection, target: WriteTarget, frames: ChunkFrames) -> WriteCounts:
    """Write a chunk's frames through the writers (`pledgeflow.writers`)."""
    return write_chunk(conn, target, frames)[0]
