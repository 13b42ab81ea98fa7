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
from pledgeflow.counters import refresh_upload_counters
from pledgeflow.currencies import currency_summary
from pledgeflow.database import database_identity, get_engine, transaction
from pledgeflow.distinct import DistinctCounts
from pledgeflow.failures import UploadNotFoundError
from pledgeflow.quantity_columns import answer_columns_by_value
from pledgeflow.settings import get_settings
from pledgeflow.settlement import settle_upload, settled_warnings
from pledgeflow.upload_dates import DateStyleError, dates_report, decide_dates
from pledgeflow.value_rules import merge_warnings
from schemas.layout import clean_label
from schemas.mappings import ColumnMapping, MappingError
from schemas.platforms import (
    FORCED_SIGNATURE,
    UnknownLayoutError,
    UnsupportedPlatformError,
    resolve_layout,
)
from schemas.tables import DATA_TABLES, PROJECT, UPLOAD, CsvUpload, CsvUploadChunk, UploadStatus

logger = logging.getLogger(__name__)
SAMPLE_SIZE = 100
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
TOP_CODES = 5  # reason codes an all_rows_rejected / too_many_rejected error names


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
    # Each chunk's name for run history, in chunk_ids' order (`chunk_name`).
    chunk_names: list[str] = []
    error: dict[str, Any] | None = None


def chunk_name(chunk_index: int, first_row: int, row_count: int) -> str:
    """A chunk as ops see it everywhere (task runs, summary, status): its index in the upload
    and the data rows it holds, e.g. `chunk-0-rows-1-2000`."""
    last = first_row + row_count - 1 if row_count else first_row
    return f"chunk-{chunk_index}-rows-{first_row}-{last}"


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
    # `shop` arrives trimmed and lower-cased (ShopDomain); a web app may store it as typed.
    if row is None or (shop is not None and row.shop.strip().lower() != shop):
        return None
    return upload_key(upload_id, row.created_at)


def upload_shop(upload_id: int) -> str | None:
    """The shop an upload belongs to; None when no such upload exists."""
    with get_engine().connect() as conn:
        shop = conn.scalar(select(UPLOAD.c.shop).where(UPLOAD.c.id == upload_id))
    return None if shop is None else str(shop)


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


def start_upload(
    upload_id: int,
    mapping: dict[str, Any] | None = None,
    *,
    dry_run: bool = False,
    max_rejected_fraction: float | None = None,
) -> UploadPlan:
    """Mark the upload PROCESSING, detect its layout from the headers, list unfinished chunks.

    The layout comes from `mapping` when given (stored on the upload for its chunks), else
    the mapping stored earlier, else the upload's forced platform, else detection; the
    detection report goes to `stats["detection"]`, with the style of each date column decided
    from the file's values. An unknown layout, a mapping naming headers the file lacks, or a
    date column in no accepted style fails the upload at once and no row is written.
    `max_rejected_fraction`, when given, is kept on the upload for its aggregation. A dry run
    records the detection but leaves the upload's status alone, and lists every chunk.
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
        earlier = (upload.stats or {}).get("detection") or {}
        # A platform an earlier run detected (and stored) is detected again, not "forced".
        forced = upload.platform if earlier.get("signature") in (None, FORCED_SIGNATURE) else None
        try:
            if not isinstance(headers, list) or not headers:
                raise ValueError("the upload has no chunks with a header row")
            check_upload_bounds(conn, upload, len(headers))
            column_mapping = ColumnMapping.from_dict(wanted) if wanted else None
            layout = resolve_layout(
                tuple(str(h) for h in headers),
                None if column_mapping else forced,
                column_mapping,
            )
            dates = decide_dates(conn, upload_id, layout)
        except (
            UnknownLayoutError,
            DateStyleError,
            UnsupportedPlatformError,
            MappingError,
            UploadRefusedError,
            ValueError,
        ) as exc:
            plan.error = (
                exc.as_error()
                if isinstance(exc, UnknownLayoutError | MappingError | DateStyleError)
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
        staged = (upload.stats or {}).get("items_block")
        by_value = answer_columns_by_value(conn, upload_id, layout, staged)
        layout = layout.with_value_answers(by_value)
        plan.platform, plan.variant = layout.platform, layout.variant
        plan.detection = {**layout.detection(), "dates": dates_report(layout, dates)} | (
            {
                "answer_columns_by_value": by_value,
                "answers_in_items_block": [clean_label(layout.headers[i]) for i in by_value],
            }
            if by_value
            else {}
        )
        values: dict[str, Any] = {
            "platform": layout.platform,
            "stats": {**(upload.stats or {}), "detection": plan.detection},
        }
        if max_rejected_fraction is not None:
            values["stats"]["max_rejected_fraction"] = max_rejected_fraction
        if column_mapping is not None:
            values["mapping"] = column_mapping.as_dict()
        if not dry_run:
            values.update(status=UploadStatus.PROCESSING, started_at=now(), completed_at=None)
        conn.execute(update(CsvUpload).where(CsvUpload.id == upload_id).values(**values))
        chunks = select(
            CsvUploadChunk.id,
            CsvUploadChunk.chunk_index,
            CsvUploadChunk.first_row,
            CsvUploadChunk.row_count,
        ).where(CsvUploadChunk.upload_id == upload_id)
        if not dry_run:
            # A web app's upload arrives with its counters at 0: totals show from the start.
            refresh_upload_counters(conn, upload_id)
            chunks = chunks.where(CsvUploadChunk.status != UploadStatus.COMPLETED)
        listed = conn.execute(chunks.order_by(CsvUploadChunk.chunk_index)).all()
        plan.chunk_ids = [c.id for c in listed]
        plan.chunk_names = [chunk_name(c.chunk_index, c.first_row, c.row_count) for c in listed]
    settle_upload(upload_id, layout, dates, dry_run=dry_run)
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

    The upload is FAILED if any chunk failed (or it failed before import) or if its rejections
    fail it (`rejection_failure`), COMPLETED when every chunk completed, and stays PROCESSING
    while another run still holds a chunk.
    """
    with transaction() as conn:
        # Locked like the chunks' live recount, so neither writes counters the other missed.
        upload = conn.execute(
            select(UPLOAD).where(UPLOAD.c.id == upload_id).with_for_update(key_share=True)
        ).first()
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
        distinct = DistinctCounts(DATA_TABLES)
        by_code: Counter[str] = Counter()
        warning_lists: list[list[dict[str, Any]]] = [staging_warnings(upload.stats)]
        sample: list[dict[str, Any]] = []
        failed: list[dict[str, Any]] = []
        for chunk in chunks:
            stats = chunk.stats or {}
            if chunk.status == UploadStatus.COMPLETED:
                distinct.add_chunk(stats)
                by_code.update(stats.get("by_code", {}))
                warning_lists.append(stats.get("warnings") or [])
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
        imported = sum(c.imported_rows for c in completed)
        if error is None and chunks and statuses[UploadStatus.COMPLETED] == len(chunks):
            error = rejection_failure(
                sum(c.row_count for c in chunks),
                imported,
                sum(c.rejected_rows for c in completed),
                dict(by_code),
                (upload.stats or {}).get("max_rejected_fraction"),
            )
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
                "tables": distinct.counts(),
                "duration_seconds": round(seconds, 3) if seconds else None,
                "rows_per_second": round(sum(c.row_count for c in completed) / seconds, 1)
                if seconds
                else None,
                **currency,
                "warnings": merge_warnings(warning_lists) + settled_warnings(upload.stats),
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


def staging_warnings(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
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
