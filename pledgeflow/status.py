"""The life of an upload and its chunks (DESIGN.md sections 1 and 3), decided in one place.

A chunk goes `PENDING → PROCESSING → COMPLETED | FAILED`, and back to PROCESSING from FAILED (a
retry) or from PROCESSING once its lease ran out (a dead worker's claim). An upload goes
`PENDING → PROCESSING → COMPLETED | FAILED`; it is FAILED when it cannot start (its layout, its
limits), when any chunk failed, when its rejections fail it (`all_rows_rejected`, or more than
`max_rejected_fraction`), or when its flow run died with no other run left to finish it.

Every status change is written here; other modules call these functions (the chunk's move to
COMPLETED takes their transaction, since it commits with the chunk's rows). `aggregate` folds
chunk outcomes into the upload's status, counters, `stats` and `errors`, for an import and a
dry run alike. The JSON written is built through `schemas.json_columns`' models, which are
also the JSON Schemas the web app's client is generated from.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any, Self
from uuid import uuid4

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Connection, func, or_, select, update

from pledgeflow.counters import refresh_upload_counters
from pledgeflow.database import get_engine, transaction
from pledgeflow.distinct import DistinctCounts, KeyReader, packed_size
from pledgeflow.settings import get_settings
from pledgeflow.settlement import settled_warnings
from pledgeflow.value_rules import merge_warnings
from schemas.json_columns import ChunkErrors, UploadErrors, UploadStats
from schemas.tables import DATA_TABLES, UPLOAD, CsvUploadChunk, UploadStatus

logger = logging.getLogger(__name__)

SAMPLE_SIZE = 100  # rejected entries an upload's `errors.sample` holds
TOP_CODES = 5  # reason codes an all_rows_rejected / too_many_rejected error names
UNFINISHED = (UploadStatus.PENDING, UploadStatus.PROCESSING)
# Chunks whose stats aggregation reads at once (`ChunkOutcome.read`, `stored_keys`).
READ_CHUNKS = 8
# Stats written before aggregation (detection, a dry run's prediction, the caller's threshold,
# the encoding a file was decoded with, the items-block decision made when staged, the time
# staging took, the settlement) that it keeps.
KEPT_STATS = (
    "detection",
    "dry_run",
    "max_rejected_fraction",
    "encoding",
    "items_block",
    "staging_seconds",
    "settled",
)


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


def lease_start(lease_seconds: int | None = None) -> datetime:
    """Claims started before this moment have run out of their lease."""
    return now() - timedelta(seconds=lease_seconds or get_settings().chunk_lease_seconds)


def flow_run_owner(flow_run_id: object) -> str:
    """The claim token of a flow run: its retries (of a task or the whole run) share it."""
    return f"flow-run:{flow_run_id}"


def local_owner() -> str:
    """A claim token for a chunk processed outside a flow run: this call alone may take it back."""
    return f"local:{uuid4().hex}"


def chunk_errors(
    rejected: Sequence[Mapping[str, Any]], error: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """`csv_upload_chunk.errors` as DESIGN fixes it."""
    return ChunkErrors.model_validate({"rejected": rejected, "error": error}).model_dump(
        mode="json"
    )


def upload_errors(
    by_code: Mapping[str, int],
    sample: Sequence[Mapping[str, Any]],
    error: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """`csv_upload.errors` as DESIGN fixes it (reasons sorted by code)."""
    errors = {"by_code": dict(sorted(by_code.items())), "sample": sample, "error": error}
    return UploadErrors.model_validate(errors).model_dump(mode="json")


# Chunk transitions.


def claimable(lease_seconds: int, owner: str | None = None) -> ColumnElement[bool]:
    """Chunk states a run may take: pending, failed, processing past its lease, or processing
    under `owner`'s own claim (a retry of the run that claimed it takes it back at once)."""
    chunk = CsvUploadChunk
    processing = chunk.status == UploadStatus.PROCESSING
    states = [
        chunk.status.in_([UploadStatus.PENDING, UploadStatus.FAILED]),
        processing & (chunk.started_at < lease_start(lease_seconds)),
    ]
    if owner:
        states.append(processing & (chunk.claimed_by == owner))
    return or_(*states)


def claim_chunk(
    chunk_id: int, lease_seconds: int | None = None, owner: str | None = None
) -> int | None:
    """Atomically move a claimable chunk to PROCESSING under `owner` and commit; return its
    index, or None when it is completed or another run holds it."""
    lease = lease_seconds or get_settings().chunk_lease_seconds
    with transaction() as conn:
        row = conn.execute(
            update(CsvUploadChunk)
            .where(CsvUploadChunk.id == chunk_id, claimable(lease, owner))
            .values(
                status=UploadStatus.PROCESSING,
                claimed_by=owner or local_owner(),
                started_at=now(),
                completed_at=None,
                attempts=CsvUploadChunk.attempts + 1,
            )
            .returning(CsvUploadChunk.chunk_index)
        ).first()
    return None if row is None else int(row.chunk_index)


def complete_chunk(
    conn: Connection,
    chunk_id: int,
    *,
    imported_rows: int,
    rejected: Sequence[Mapping[str, Any]],
    rejected_rows: int,
    stats: dict[str, Any],
    **columns: Any,
) -> None:
    """Mark a chunk COMPLETED with its counters, rejections and `stats`, inside the transaction
    that wrote its rows (`columns`: other columns written with it, e.g. its digest)."""
    conn.execute(
        update(CsvUploadChunk)
        .where(CsvUploadChunk.id == chunk_id)
        .values(
            status=UploadStatus.COMPLETED,
            imported_rows=imported_rows,
            rejected_rows=rejected_rows,
            errors=chunk_errors(rejected),
            stats=stats,
            completed_at=now(),
            **columns,
        )
    )


def _failed_chunk(code: str, message: str) -> dict[str, Any]:
    return {
        "status": UploadStatus.FAILED,
        "errors": chunk_errors([], {"code": code, "message": message}),
        "imported_rows": 0,
        "rejected_rows": 0,
        "completed_at": now(),
    }


def mark_chunk_failed(chunk_id: int, code: str, message: str, owner: str | None = None) -> bool:
    """Record that a chunk could not be processed as a whole (its rows were rolled back);
    only while `owner` still holds it, and never over a COMPLETED chunk. True if recorded."""
    held = CsvUploadChunk.status != UploadStatus.COMPLETED
    if owner is not None:
        held = held & (CsvUploadChunk.claimed_by == owner)
    with transaction() as conn:
        upload_id = conn.execute(
            update(CsvUploadChunk)
            .where(CsvUploadChunk.id == chunk_id, held)
            .values(**_failed_chunk(code, message))
            .returning(CsvUploadChunk.upload_id)
        ).scalar()
        if upload_id is not None:
            refresh_upload_counters(conn, upload_id)
    if upload_id is not None:
        logger.warning("chunk %s failed: %s", chunk_id, code)
    return upload_id is not None


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
                .values(**_failed_chunk("task_failed", message[:400]))
            ).rowcount
    return marked


def chunks_held_elsewhere(upload_id: int, owner: str) -> int:
    """How many of an upload's chunks another run holds within its lease (that run will
    aggregate the upload, so a run ending without it must leave the upload's status alone)."""
    with get_engine().connect() as conn:
        return int(
            conn.execute(
                select(func.count())
                .select_from(CsvUploadChunk)
                .where(
                    CsvUploadChunk.upload_id == upload_id,
                    CsvUploadChunk.status == UploadStatus.PROCESSING,
                    CsvUploadChunk.started_at >= lease_start(),
                    or_(CsvUploadChunk.claimed_by.is_(None), CsvUploadChunk.claimed_by != owner),
                )
            ).scalar_one()
        )


def find_stuck_uploads(lease_seconds: int | None = None) -> list[int]:
    """Ids of uploads with a chunk left PROCESSING past its lease, oldest first."""
    with get_engine().connect() as conn:
        return list(
            conn.execute(
                select(CsvUploadChunk.upload_id)
                .where(
                    CsvUploadChunk.status == UploadStatus.PROCESSING,
                    CsvUploadChunk.started_at < lease_start(lease_seconds),
                )
                .group_by(CsvUploadChunk.upload_id)
                .order_by(CsvUploadChunk.upload_id)
            ).scalars()
        )


# Upload transitions.


def start_processing(conn: Connection, upload_id: int, **columns: Any) -> None:
    """Mark the upload PROCESSING from now, with other `columns` it records as it starts."""
    conn.execute(
        update(UPLOAD)
        .where(UPLOAD.c.id == upload_id)
        .values(status=UploadStatus.PROCESSING, started_at=now(), completed_at=None, **columns)
    )


def fail_upload(
    conn: Connection, upload_id: int, error: Mapping[str, Any], *, unfinished_only: bool = False
) -> bool:
    """Mark the upload FAILED as a whole with `error` (no rows reported); with
    `unfinished_only`, only if it has not reached a final status. True if marked."""
    where = [UPLOAD.c.id == upload_id]
    if unfinished_only:
        where.append(UPLOAD.c.status.in_(UNFINISHED))
    marked = conn.execute(
        update(UPLOAD)
        .where(*where)
        .values(
            status=UploadStatus.FAILED,
            errors=upload_errors({}, [], error),
            started_at=func.coalesce(UPLOAD.c.started_at, now()),
            completed_at=now(),
        )
        .returning(UPLOAD.c.id)
    ).first()
    return marked is not None


def fail_after_run(upload_id: int, owner: str, message: str) -> bool:
    """After a flow run under `owner` failed or crashed outside the aggregation, mark its
    upload FAILED (`flow_failed`) unless another run still holds one of its chunks (that run
    aggregates it) or it already reached a final status. True if marked."""
    held = chunks_held_elsewhere(upload_id, owner)
    if held:
        logger.warning(
            "upload %s left PROCESSING: %s chunks held by another run, which will finish it",
            upload_id,
            held,
        )
        return False
    with transaction() as conn:
        error = {"code": "flow_failed", "message": message[:400]}
        return fail_upload(conn, upload_id, error, unfinished_only=True)


# The rule for a failed upload, and the aggregation.


class UploadCounters(BaseModel):
    """The upload's counters (its `csv_upload` columns of the same names)."""

    total_rows: int
    imported_rows: int
    rejected_rows: int
    total_chunks: int
    completed_chunks: int
    failed_chunks: int

    @classmethod
    def of(cls, row: Any) -> Self:
        """The counters of a row (or any object) with attributes of these names."""
        return cls(**{name: getattr(row, name) for name in cls.model_fields})


class UploadIdentity(BaseModel):
    """Which upload a result is of, its status and platform."""

    upload_id: int
    status: str
    platform: str | None


# Fields in DESIGN's order for `--json`: pydantic lists a later base's fields first.
class UploadResult(UploadCounters, UploadIdentity):
    """The upload's outcome as the CLI's `--json` prints it."""

    stats: dict[str, Any] | None = None
    errors: dict[str, Any] | None = None
    # True for a dry run's prediction: nothing was written to the data tables.
    dry_run: bool = False

    def run_failure(self) -> str | None:
        """Why the flow run that produced this result fails, or None when it completes: a run
        is Completed only when its upload is (a dry run's when its prediction is not FAILED)."""
        if self.status == UploadStatus.COMPLETED or (
            self.dry_run and self.status != UploadStatus.FAILED
        ):
            return None
        error = (self.errors or {}).get("error") or {}
        if self.status == UploadStatus.FAILED:
            message = f"failed: {error.get('code', 'unknown')}: {error.get('message', '')}"
        else:
            unfinished = self.total_chunks - self.completed_chunks - self.failed_chunks
            message = f"is still {self.status}: {unfinished} chunks held by another run"
        return f"upload {self.upload_id} {message}"


def log_result(result: UploadResult) -> None:
    """Log an upload's outcome, or a dry run's prediction, by its id and counts."""
    logger.info(
        "upload %s dry run %s: %s rows, %s would import, %s would be rejected, "
        "%s/%s chunks would fail"
        if result.dry_run
        else "upload %s %s: %s rows, %s imported, %s rejected, %s/%s chunks failed",
        result.upload_id,
        result.status,
        result.total_rows,
        result.imported_rows,
        result.rejected_rows,
        result.failed_chunks,
        result.total_chunks,
    )


def rejection_failure(
    total_rows: int,
    imported_rows: int,
    rejected_rows: int,
    by_code: dict[str, int],
    max_rejected_fraction: float | None = None,
) -> dict[str, Any] | None:
    """The upload's error when its rejections alone fail it, else None.

    An upload that imported none of its data rows did not succeed (`all_rows_rejected`); with
    `max_rejected_fraction`, neither did one rejecting a larger share (`too_many_rejected`).
    A header-only file (no data rows) is not a failure.
    """
    if rejected_rows == 0 or total_rows == 0:
        return None
    top = dict(Counter(by_code).most_common(TOP_CODES))
    reasons = ", ".join(f"{code} {count}" for code, count in top.items())
    if imported_rows == 0:
        return {
            "code": "all_rows_rejected",
            "message": f"every data row ({rejected_rows}) was rejected, so nothing was imported "
            f"(rows by reason: {reasons}); `pledgeflow errors` lists each with its value",
            "top_codes": top,
        }
    fraction = rejected_rows / total_rows
    if max_rejected_fraction is not None and fraction > max_rejected_fraction:
        return {
            "code": "too_many_rejected",
            "message": f"{rejected_rows} of {total_rows} data rows ({fraction:.1%}) were "
            f"rejected, above max_rejected_fraction {max_rejected_fraction} "
            f"(rows by reason: {reasons})",
            "top_codes": top,
        }
    return None


@dataclass(frozen=True)
class ChunkOutcome:
    """One chunk as aggregation sees it: its status and rows, and, once it ran, the `stats`
    (tables, keys, by_code, warnings) and `errors` (rejected, error) it recorded.

    Read from the database (`read`), its stats come without their keys, which stay stored:
    `key_sizes` says how many it reported for each table, and `stored_keys` reads them again."""

    chunk_index: int
    status: UploadStatus
    row_count: int
    imported_rows: int = 0
    rejected_rows: int = 0
    stats: Mapping[str, Any] | None = None
    errors: Mapping[str, Any] | None = None
    key_sizes: Mapping[str, int] | None = None

    @classmethod
    def read(cls, conn: Connection, upload_id: int) -> list[Self]:
        """The outcomes of an upload's chunks, in chunk order, their keys left stored.

        Read a few chunks at a time: each chunk's stats carry its packed keys (~0.6 MB for
        10,000 rows), which only the counts need, read again in passes (`stored_keys`)."""
        rows = conn.execute(
            select(
                *(
                    getattr(CsvUploadChunk, field.name)
                    for field in fields(cls)
                    if field.name != "key_sizes"
                )
            )
            .where(CsvUploadChunk.upload_id == upload_id)
            .order_by(CsvUploadChunk.chunk_index),
            execution_options={"yield_per": READ_CHUNKS},
        )
        outcomes = []
        for row in rows:
            found = row._asdict()
            stats = found["stats"]
            keys = stats.pop("keys", None) if isinstance(stats, dict) else None
            sizes = (
                {t: sum(map(packed_size, packed.values())) for t, packed in keys.items()}
                if isinstance(keys, dict)
                else {}
            )
            outcomes.append(
                cls(**{**found, "status": UploadStatus(row.status), "key_sizes": sizes})
            )
        return outcomes


def stored_keys(conn: Connection, upload_id: int, chunks: Sequence[ChunkOutcome]) -> KeyReader:
    """Reads the packed keys of the `chunks` completed as `ChunkOutcome.read` saw them, a few
    chunks at a time, each time it is called (`DistinctCounts.counts`)."""
    completed = [c.chunk_index for c in chunks if c.status == UploadStatus.COMPLETED]

    def read() -> Iterator[tuple[int, Mapping[str, Mapping[str, str]]]]:
        for start in range(0, len(completed), READ_CHUNKS):
            batch = completed[start : start + READ_CHUNKS]
            found = conn.execute(
                select(CsvUploadChunk.chunk_index, CsvUploadChunk.stats["keys"]).where(
                    CsvUploadChunk.upload_id == upload_id,
                    CsvUploadChunk.chunk_index.in_(batch),
                    CsvUploadChunk.status == UploadStatus.COMPLETED,
                )
            ).all()
            for index, keys in found:
                yield index, keys or {}

    return read


@dataclass(frozen=True)
class Aggregate:
    """An upload's status, counters and reports folded from its chunks (`aggregate`)."""

    status: UploadStatus
    counters: UploadCounters
    error: dict[str, Any] | None
    tables: dict[str, dict[str, int]]
    by_code: dict[str, int]
    sample: list[dict[str, Any]]
    warnings: list[dict[str, Any]]
    completed_rows: int  # data rows of the completed chunks, imported or rejected
    earlier: Mapping[str, Any]  # the upload's stats before aggregation

    @property
    def final(self) -> bool:
        """Whether the upload reached COMPLETED or FAILED (else another run holds a chunk)."""
        return self.status != UploadStatus.PROCESSING

    def stats(
        self, seconds: float | None, currency: Mapping[str, Any], *, keep: bool = True
    ) -> dict[str, Any]:
        """`csv_upload.stats`: the distinct rows per table, the time taken and rows per second
        over `seconds`, the `currency` summary, warnings, and (with `keep`) the KEPT_STATS
        recorded before."""
        kept = {k: v for k, v in self.earlier.items() if k in KEPT_STATS} if keep else {}
        stats = {
            **kept,
            "tables": self.tables,
            "duration_seconds": round(seconds, 3) if seconds else None,
            "rows_per_second": round(self.completed_rows / seconds, 1) if seconds else None,
            **currency,
            "warnings": self.warnings,
        }
        return UploadStats.model_validate(stats).model_dump(mode="json", exclude_unset=True)

    def errors(self) -> dict[str, Any]:
        """`csv_upload.errors`: rejected rows by reason, a sample of them, and the failure."""
        return upload_errors(self.by_code, self.sample, self.error)


def upload_status(
    chunks: Sequence[ChunkOutcome],
    by_code: Mapping[str, int],
    earlier_error: Mapping[str, Any] | None = None,
    max_rejected_fraction: float | None = None,
    *,
    dry_run: bool = False,
) -> tuple[UploadStatus, dict[str, Any] | None]:
    """The upload's status and error from its chunks (DESIGN section 3).

    FAILED if any chunk failed, if its rejections fail it (`rejection_failure`), if it has no
    chunks, or with `earlier_error` (why it could not start) while no chunk has been attempted;
    COMPLETED when every chunk completed; else still PROCESSING (another run holds a chunk).
    """
    failed = [
        {"chunk_index": c.chunk_index, **((c.errors or {}).get("error") or {})}
        for c in chunks
        if c.status == UploadStatus.FAILED
    ]
    started = any(c.status != UploadStatus.PENDING for c in chunks)
    error = dict(earlier_error) if earlier_error and not started else None
    if failed:
        error = {
            "code": "chunks_failed",
            "message": f"{len(failed)} of {len(chunks)} chunks "
            + ("would fail" if dry_run else "failed"),
            "chunks": failed[:SAMPLE_SIZE],
        }
    completed = [c for c in chunks if c.status == UploadStatus.COMPLETED]
    every = bool(chunks) and len(completed) == len(chunks)
    if error is None and every:
        error = rejection_failure(
            sum(c.row_count for c in chunks),
            sum(c.imported_rows for c in completed),
            sum(c.rejected_rows for c in completed),
            dict(by_code),
            max_rejected_fraction,
        )
    if error is None and not chunks:
        error = {"code": "no_data", "message": "the upload has no chunks"}
    if error is not None:
        return UploadStatus.FAILED, error
    return (UploadStatus.COMPLETED if every else UploadStatus.PROCESSING), None


def aggregate(
    chunks: Sequence[ChunkOutcome],
    upload_stats: Mapping[str, Any] | None,
    earlier_error: Mapping[str, Any] | None = None,
    *,
    dry_run: bool = False,
    keys: KeyReader | None = None,
) -> Aggregate:
    """Fold an upload's chunks into its status, counters, distinct table counts, rejected rows
    by reason, a sample of them, and its warnings (about the whole file first). `upload_stats`
    gives what was recorded before: the caller's `max_rejected_fraction`, the encoding,
    detection and settling. `keys` reads the keys of chunks read without them
    (`ChunkOutcome.read`, `stored_keys`)."""
    distinct = DistinctCounts(DATA_TABLES)
    by_code: Counter[str] = Counter()
    warning_lists: list[list[dict[str, Any]]] = [file_warnings(upload_stats)]
    sample: list[dict[str, Any]] = []
    completed = [c for c in chunks if c.status == UploadStatus.COMPLETED]
    for chunk in completed:
        stats = chunk.stats or {}
        if chunk.key_sizes is None:
            distinct.add_chunk(dict(stats))
        else:
            distinct.add_stored(chunk.chunk_index, stats, chunk.key_sizes)
        by_code.update(stats.get("by_code") or {})
        warning_lists.append(list(stats.get("warnings") or []))
        if len(sample) < SAMPLE_SIZE:
            sample += (chunk.errors or {}).get("rejected", [])[: SAMPLE_SIZE - len(sample)]
    stats = upload_stats or {}
    status, error = upload_status(
        chunks, by_code, earlier_error, stats.get("max_rejected_fraction"), dry_run=dry_run
    )
    return Aggregate(
        status=status,
        counters=UploadCounters(
            total_rows=sum(c.row_count for c in chunks),
            total_chunks=len(chunks),
            completed_chunks=len(completed),
            failed_chunks=sum(c.status == UploadStatus.FAILED for c in chunks),
            imported_rows=sum(c.imported_rows for c in completed),
            rejected_rows=sum(c.rejected_rows for c in completed),
        ),
        error=error,
        tables=distinct.counts(keys),
        by_code=dict(by_code),
        sample=sample,
        warnings=merge_warnings(warning_lists) + settled_warnings(dict(stats)),
        completed_rows=sum(c.row_count for c in completed),
        earlier=stats,
    )


def file_warnings(stats: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Warnings about the whole file: an encoding detected (not UTF-8 or UTF-16), and columns
    of the items block whose values make them answers."""
    out: list[dict[str, Any]] = []
    encoding = (stats or {}).get("encoding")
    if isinstance(encoding, dict) and encoding.get("detected"):
        out.append({"code": "decoded_as", "count": 1, "values": [str(encoding.get("name"))]})
    answers = ((stats or {}).get("detection") or {}).get("answers_in_items_block") or []
    if answers:
        out.append({"code": "items_block_answers", "count": len(answers), "values": answers})
    return out
