"""Start an upload (detect its layout, list its chunks) and aggregate it once chunks are done."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, func, select, update

from pledgeflow.chunks import now
from pledgeflow.currencies import currency_summary
from pledgeflow.database import database_identity, get_engine, transaction
from pledgeflow.failures import UploadNotFoundError
from pledgeflow.settings import get_settings
from schemas.mappings import ColumnMapping, MappingError
from schemas.platforms import UnknownLayoutError, UnsupportedPlatformError, resolve_layout
from schemas.tables import DATA_TABLES, PROJECT, UPLOAD, CsvUpload, CsvUploadChunk, UploadStatus

logger = logging.getLogger(__name__)
SAMPLE_SIZE = 100
# Stats written before aggregation (detection, a dry run's prediction) that it keeps.
KEPT_STATS = ("detection", "dry_run")


class UploadPlan(BaseModel):
    """The chunks a flow run should attempt, or why the upload cannot be processed."""

    upload_id: int
    shop: str
    platform: str | None
    variant: str | None = None
    detection: dict[str, Any] | None = None
    # Names this upload across databases and identity resets, to scope cached chunk results.
    upload_key: str = ""
    chunk_ids: list[int] = []
    error: dict[str, Any] | None = None


class UploadResult(BaseModel):
    """The upload's outcome as the CLI's `--json` prints it."""

    upload_id: int
    status: str
    platform: str | None
    total_rows: int
    imported_rows: int
    rejected_rows: int
    total_chunks: int
    completed_chunks: int
    failed_chunks: int
    stats: dict[str, Any] | None = None
    errors: dict[str, Any] | None = None
    # True for a dry run's prediction: nothing was written to the data tables.
    dry_run: bool = False


def upload_key(upload_id: int, created_at: datetime) -> str:
    """A name of this upload unique across databases and id resets (cache and run keys)."""
    stamp = int(_aware(created_at).timestamp() * 1e6)
    return f"{database_identity()}-u{upload_id}-{stamp}"


def find_upload_key(upload_id: int, shop: str | None = None) -> str | None:
    """The upload's key; None when no such upload exists (or it is not `shop`'s, if given)."""
    with get_engine().connect() as conn:
        row = conn.execute(
            select(UPLOAD.c.created_at, UPLOAD.c.shop).where(UPLOAD.c.id == upload_id)
        ).first()
    if row is None or (shop is not None and row.shop != shop):
        return None
    return upload_key(upload_id, row.created_at)


def record_flow_run(upload_id: int, flow_run_id: str) -> None:
    """Remember which flow run processes an upload."""
    with transaction() as conn:
        conn.execute(update(UPLOAD).where(UPLOAD.c.id == upload_id).values(flow_run_id=flow_run_id))


class UploadRefusedError(ValueError):
    """An upload pledgeflow will not process: over a limit, or not its shop's project."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_upload_bounds(conn: Connection, upload: Any, width: int) -> None:
    """Refuse an upload whose project belongs to another shop, or that exceeds the limits."""
    project_shop = conn.execute(
        select(PROJECT.c.shop).where(PROJECT.c.id == upload.project_id)
    ).scalar()
    if project_shop != upload.shop:
        raise UploadRefusedError(
            "shop_mismatch",
            f"upload {upload.id} names project {upload.project_id}, which is not its shop's",
        )
    limits = get_settings()
    if width > limits.max_columns:
        raise UploadRefusedError(
            "limit_exceeded",
            f"the header has {width} columns, over the limit of {limits.max_columns} "
            "(PLEDGEFLOW_MAX_COLUMNS)",
        )
    rows = conn.execute(
        select(func.coalesce(func.sum(CsvUploadChunk.row_count), 0)).where(
            CsvUploadChunk.upload_id == upload.id
        )
    ).scalar_one()
    if rows > limits.max_rows:
        raise UploadRefusedError(
            "limit_exceeded",
            f"the upload has {rows} data rows, over the limit of {limits.max_rows} "
            "(PLEDGEFLOW_MAX_ROWS)",
        )


def start_upload(
    upload_id: int, mapping: dict[str, Any] | None = None, *, dry_run: bool = False
) -> UploadPlan:
    """Mark the upload PROCESSING, detect its layout from the headers, list unfinished chunks.

    The layout comes from `mapping` when given (stored on the upload for its chunks), else
    the mapping stored earlier, else the upload's forced platform, else detection; the
    detection report goes to `stats["detection"]`. An unknown layout or a mapping naming
    headers the file lacks fails the upload at once and no row is written. A dry run records
    the detection but leaves the upload's status alone, and lists every chunk.
    """
    with transaction() as conn:
        upload = conn.execute(select(UPLOAD).where(UPLOAD.c.id == upload_id)).first()
        if upload is None:
            raise UploadNotFoundError(upload_id)
        first = conn.execute(
            select(CsvUploadChunk.data)
            .where(CsvUploadChunk.upload_id == upload_id)
            .order_by(CsvUploadChunk.chunk_index)
            .limit(1)
        ).scalar()
        plan = UploadPlan(
            upload_id=upload_id,
            shop=upload.shop,
            platform=upload.platform,
            upload_key=upload_key(upload_id, upload.created_at),
        )
        headers = (first or {}).get("headers") if isinstance(first, dict) else None
        wanted = mapping if mapping is not None else upload.mapping
        try:
            if not isinstance(headers, list) or not headers:
                raise ValueError("the upload has no chunks with a header row")
            check_upload_bounds(conn, upload, len(headers))
            column_mapping = ColumnMapping.from_dict(wanted) if wanted else None
            layout = resolve_layout(
                tuple(str(h) for h in headers),
                None if column_mapping else upload.platform,
                column_mapping,
            )
        except (
            UnknownLayoutError,
            UnsupportedPlatformError,
            MappingError,
            UploadRefusedError,
            ValueError,
        ) as exc:
            plan.error = (
                exc.as_error()
                if isinstance(exc, UnknownLayoutError | MappingError)
                else {"code": getattr(exc, "code", "no_data"), "message": str(exc)}
            )
            if not dry_run:
                conn.execute(
                    update(CsvUpload)
                    .where(CsvUpload.id == upload_id)
                    .values(
                        status=UploadStatus.FAILED,
                        errors={"by_code": {}, "sample": [], "error": plan.error},
                        started_at=func.coalesce(CsvUpload.started_at, now()),
                        completed_at=now(),
                    )
                )
            logger.warning("upload %s failed before import: %s", upload_id, plan.error["code"])
            return plan
        plan.platform, plan.variant = layout.platform, layout.variant
        plan.detection = layout.detection()
        values: dict[str, Any] = {
            "platform": layout.platform,
            "stats": {**(upload.stats or {}), "detection": plan.detection},
        }
        if column_mapping is not None:
            values["mapping"] = column_mapping.as_dict()
        if not dry_run:
            values.update(status=UploadStatus.PROCESSING, started_at=now(), completed_at=None)
        conn.execute(update(CsvUpload).where(CsvUpload.id == upload_id).values(**values))
        chunks = select(CsvUploadChunk.id).where(CsvUploadChunk.upload_id == upload_id)
        if not dry_run:
            chunks = chunks.where(CsvUploadChunk.status != UploadStatus.COMPLETED)
        plan.chunk_ids = list(conn.execute(chunks.order_by(CsvUploadChunk.chunk_index)).scalars())
    logger.info(
        "upload %s%s: platform %s (%s, signature %s), %s chunks, %s columns kept as answers",
        upload_id,
        " (dry run)" if dry_run else "",
        plan.platform,
        plan.variant,
        layout.signature,
        len(plan.chunk_ids),
        len(layout.answer_columns),
    )
    return plan


def aggregate_upload(upload_id: int) -> UploadResult:
    """Set the upload's counters, stats, errors and final status from its chunks.

    The upload is FAILED if any chunk failed (or it failed before import), COMPLETED when every
    chunk completed, and stays PROCESSING while another run still holds a chunk.
    """
    with transaction() as conn:
        upload = conn.execute(select(UPLOAD).where(UPLOAD.c.id == upload_id)).first()
        if upload is None:
            raise UploadNotFoundError(upload_id)
        chunks = conn.execute(
            select(
                CsvUploadChunk.chunk_index,
                CsvUploadChunk.status,
                CsvUploadChunk.row_count,
                CsvUploadChunk.imported_rows,
                CsvUploadChunk.rejected_rows,
                CsvUploadChunk.stats,
                CsvUploadChunk.errors,
            )
            .where(CsvUploadChunk.upload_id == upload_id)
            .order_by(CsvUploadChunk.chunk_index)
        ).all()
        statuses = Counter(UploadStatus(c.status) for c in chunks)
        tables = {
            t: {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0} for t in DATA_TABLES
        }
        by_code: Counter[str] = Counter()
        sample: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for chunk in chunks:
            stats = chunk.stats or {}
            if chunk.status == UploadStatus.COMPLETED:
                for table, counts in stats.get("tables", {}).items():
                    for key, value in counts.items():
                        tables[table][key] += value
                by_code.update(stats.get("by_code", {}))
                if len(sample) < SAMPLE_SIZE:
                    sample += (chunk.errors or {}).get("rejected", [])[: SAMPLE_SIZE - len(sample)]
            elif chunk.status == UploadStatus.FAILED:
                failed.append(
                    {"chunk_index": chunk.chunk_index, **((chunk.errors or {}).get("error") or {})}
                )
        completed = [c for c in chunks if c.status == UploadStatus.COMPLETED]
        # A layout error from start_upload stands until a chunk has been attempted.
        error = None
        if upload.status == UploadStatus.FAILED and not chunks_started(chunks):
            error = (upload.errors or {}).get("error")
        if failed:
            error = {
                "code": "chunks_failed",
                "message": f"{len(failed)} of {len(chunks)} chunks failed",
                "chunks": failed[:SAMPLE_SIZE],
            }
        if error is not None:
            status = UploadStatus.FAILED
        elif chunks and statuses[UploadStatus.COMPLETED] == len(chunks):
            status = UploadStatus.COMPLETED
        elif not chunks:
            status = UploadStatus.FAILED
            error = {"code": "no_data", "message": "the upload has no chunks"}
        else:
            status = UploadStatus.PROCESSING
        finished = now() if status != UploadStatus.PROCESSING else None
        started = upload.started_at or finished
        seconds = (
            max((finished - _aware(started)).total_seconds(), 1e-6)
            if finished and started
            else None
        )
        imported = sum(c.imported_rows for c in completed)
        currency = currency_summary(conn, upload_id, upload.project_id)
        kept = {k: v for k, v in (upload.stats or {}).items() if k in KEPT_STATS}
        values: dict[str, Any] = {
            "status": status,
            "total_rows": sum(c.row_count for c in chunks),
            "total_chunks": len(chunks),
            "completed_chunks": len(completed),
            "failed_chunks": len(failed),
            "imported_rows": imported,
            "rejected_rows": sum(c.rejected_rows for c in completed),
            "stats": {
                **kept,
                "tables": tables,
                "duration_seconds": round(seconds, 3) if seconds else None,
                "rows_per_second": round(sum(c.row_count for c in completed) / seconds, 1)
                if seconds
                else None,
                **currency,
            },
            "errors": {"by_code": dict(sorted(by_code.items())), "sample": sample, "error": error},
            "completed_at": finished,
        }
        conn.execute(update(CsvUpload).where(CsvUpload.id == upload_id).values(**values))
    result = read_upload(upload_id)
    for note in currency["notes"]:
        logger.warning(
            "upload %s: %s pledges in %s currencies (%s)",
            upload_id,
            note["scope"],
            len(note["currencies"]),
            ", ".join(note["currencies"]),
        )
    logger.info(
        "upload %s %s: %s rows, %s imported, %s rejected, %s/%s chunks failed",
        upload_id,
        result.status,
        result.total_rows,
        result.imported_rows,
        result.rejected_rows,
        result.failed_chunks,
        result.total_chunks,
    )
    return result


def chunks_started(chunks: Sequence[Any]) -> bool:
    """Whether any chunk has been attempted (so an earlier upload-level error is stale)."""
    return any(c.status != UploadStatus.PENDING for c in chunks)


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_upload(upload_id: int) -> UploadResult:
    """Read an upload's status and counters."""
    with get_engine().connect() as conn:
        upload = conn.execute(select(UPLOAD).where(UPLOAD.c.id == upload_id)).first()
    if upload is None:
        raise UploadNotFoundError(upload_id)
    return UploadResult(
        upload_id=upload.id,
        status=UploadStatus(upload.status).value,
        platform=upload.platform,
        total_rows=upload.total_rows,
        imported_rows=upload.imported_rows,
        rejected_rows=upload.rejected_rows,
        total_chunks=upload.total_chunks,
        completed_chunks=upload.completed_chunks,
        failed_chunks=upload.failed_chunks,
        stats=upload.stats,
        errors=upload.errors,
    )


def fail_unfinished_upload(upload_id: int, code: str, message: str) -> UploadResult | None:
    """Mark an upload FAILED with `code` unless it already reached a final status.

    Used when a flow run dies outside the normal aggregation (a crash, a lost database);
    returns the failed upload, or None when there was nothing to mark.
    """
    with transaction() as conn:
        marked = conn.execute(
            update(UPLOAD)
            .where(
                UPLOAD.c.id == upload_id,
                UPLOAD.c.status.in_([UploadStatus.PENDING, UploadStatus.PROCESSING]),
            )
            .values(
                status=UploadStatus.FAILED,
                errors={
                    "by_code": {},
                    "sample": [],
                    "error": {"code": code, "message": message},
                },
                completed_at=now(),
            )
            .returning(UPLOAD.c.id)
        ).first()
    return None if marked is None else read_upload(upload_id)


def find_stuck_uploads(lease_seconds: int | None = None) -> list[int]:
    """Ids of uploads with a chunk left PROCESSING past its lease, oldest first."""
    lease = lease_seconds or get_settings().chunk_lease_seconds
    expired = now() - timedelta(seconds=lease)
    with get_engine().connect() as conn:
        return list(
            conn.execute(
                select(CsvUploadChunk.upload_id)
                .where(
                    CsvUploadChunk.status == UploadStatus.PROCESSING,
                    CsvUploadChunk.started_at < expired,
                )
                .group_by(CsvUploadChunk.upload_id)
                .order_by(CsvUploadChunk.upload_id)
            ).scalars()
        )
