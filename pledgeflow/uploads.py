"""Start an upload (detect its layout, list its chunks) and aggregate it once chunks are done."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Connection, func, select, update

from pledgeflow.allocators import release_freed_memory, tune_allocators
from pledgeflow.collector import freeze_loaded_objects
from pledgeflow.counters import refresh_upload_counters
from pledgeflow.currencies import currency_summary
from pledgeflow.database import database_identity, get_engine, transaction
from pledgeflow.failures import UploadNotFoundError
from pledgeflow.quantity_columns import answer_columns_by_value
from pledgeflow.settings import get_settings
from pledgeflow.settlement import settle_upload
from pledgeflow.status import (
    ChunkOutcome,
    UploadCounters,
    UploadResult,
    aggregate,
    fail_upload,
    log_result,
    now,
    start_processing,
    stored_keys,
)
from pledgeflow.upload_dates import DateStyleError, dates_report, decide_dates
from schemas.layout import clean_label
from schemas.mappings import ColumnMapping, MappingError
from schemas.platforms import (
    FORCED_SIGNATURE,
    UnknownLayoutError,
    UnsupportedPlatformError,
    resolve_layout,
)
from schemas.tables import PROJECT, UPLOAD, CsvUpload, CsvUploadChunk, UploadStatus

logger = logging.getLogger(__name__)


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
    freeze_loaded_objects()
    tune_allocators()
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
                fail_upload(conn, upload_id, plan.error)
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
        if dry_run:
            conn.execute(update(CsvUpload).where(CsvUpload.id == upload_id).values(**values))
        else:
            start_processing(conn, upload_id, **values)
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
    """Set the upload's counters, stats, errors and status from its chunks (`status.aggregate`);
    it stays PROCESSING while another run still holds a chunk."""
    with transaction() as conn:
        # Locked like the chunks' live recount, so neither writes counters the other missed.
        upload = conn.execute(
            select(UPLOAD).where(UPLOAD.c.id == upload_id).with_for_update(key_share=True)
        ).first()
        if upload is None:
            raise UploadNotFoundError(upload_id)
        # Why the upload could not start stands until a chunk has been attempted.
        failed = upload.status == UploadStatus.FAILED
        earlier = (upload.errors or {}).get("error") if failed else None
        chunks = ChunkOutcome.read(conn, upload_id)
        keys = stored_keys(conn, upload_id, chunks)
        outcome = aggregate(chunks, upload.stats, earlier, keys=keys)
        finished = now() if outcome.final else None
        started = upload.started_at or finished
        seconds = (
            max((finished - _aware(started)).total_seconds(), 1e-6)
            if finished and started
            else None
        )
        currency = currency_summary(conn, upload_id, upload.project_id)
        conn.execute(
            update(CsvUpload)
            .where(CsvUpload.id == upload_id)
            .values(
                status=outcome.status,
                **outcome.counters.model_dump(),
                stats=outcome.stats(seconds, currency),
                errors=outcome.errors(),
                completed_at=finished,
            )
        )
    release_freed_memory()  # the chunks' stats and the keys counted
    result = read_upload(upload_id)
    for note in currency["notes"]:
        logger.warning(
            "upload %s: %s pledges in %s currencies (%s)",
            upload_id,
            note["scope"],
            len(note["currencies"]),
            ", ".join(note["currencies"]),
        )
    log_result(result)
    return result


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
        **UploadCounters.of(upload).model_dump(),
        stats=upload.stats,
        errors=upload.errors,
    )
