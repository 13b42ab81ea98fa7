"""Dry runs: what importing an upload would create, update and leave unchanged, writing nothing.

Every chunk is mapped, validated and written in upload order inside one transaction that is
rolled back at the end. Running the real write path is what makes the prediction exact: a
product or backer that an early chunk creates is seen by later chunks as it would be in a real
import, which chunk-by-chunk rollbacks would count as created again. The one exception is a key
repeated in two chunks: the real import's chunks commit in any order, so its later row counts as
an update or, committed first, leaves the earlier one unchanged. The price is that the
transaction holds its row locks until the dry run ends, so a real import of the same project
running at the same time waits for it.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from pledgeflow.chunk_rows import answers_by_value, chunk_layout, chunk_table
from pledgeflow.chunks import describe_error
from pledgeflow.currencies import currency_summary
from pledgeflow.database import get_engine, rolled_back, transaction
from pledgeflow.failures import ChunkDataError, UploadNotFoundError, is_transient
from pledgeflow.settlement import upload_inputs, write_mode
from pledgeflow.status import ChunkOutcome, UploadResult, aggregate, chunk_errors, log_result, now
from pledgeflow.transform import build_frames, rows_by_code
from pledgeflow.upload_dates import stored_dates
from pledgeflow.writers import WriteTarget, write_chunk
from schemas.tables import CsvUpload, CsvUploadChunk, UploadStatus


def dry_run_upload(upload_id: int, error: dict[str, Any] | None = None) -> UploadResult:
    """Predict the outcome of importing an upload and record it in `stats["dry_run"]`.

    `error` is the layout error `start_upload` found, if any: the prediction is then a failed
    upload. The upload's status and counters are left alone; chunks still PENDING get the rows
    they would reject in `errors`, so the rejected-row report works before the real import.
    """
    started = time.perf_counter()
    engine = get_engine()
    with engine.connect() as conn:
        upload = upload_inputs(conn, upload_id)
        if upload is None:
            raise UploadNotFoundError(upload_id)
        chunks = conn.execute(
            select(
                CsvUploadChunk.id,
                CsvUploadChunk.chunk_index,
                CsvUploadChunk.first_row,
                CsvUploadChunk.row_count,
                CsvUploadChunk.superseded,
            )
            .where(CsvUploadChunk.upload_id == upload_id)
            .order_by(CsvUploadChunk.chunk_index)
        ).all()

    # Rejections are written to the chunk rows once the data transaction is rolled back;
    # meanwhile each chunk's list is held as compact JSON text.
    written: list[tuple[int, str, dict[str, Any]]] = []
    outcomes = [
        ChunkOutcome(chunk.chunk_index, UploadStatus.PENDING, chunk.row_count) for chunk in chunks
    ]
    currency: dict[str, Any] = {"currencies": {}, "notes": []}
    dates = stored_dates(upload.stats)
    settled = (upload.stats or {}).get("settled") or {}
    # The currency settling decided, which a real run's chunks read from the project.
    project_currency = upload.currency or settled.get("currency")
    if error is None:
        with rolled_back(engine) as conn:
            for position, chunk in enumerate(chunks):
                data = conn.execute(
                    select(CsvUploadChunk.data).where(CsvUploadChunk.id == chunk.id)
                ).scalar()
                try:
                    headers, rows = chunk_table(data)
                    layout = chunk_layout(
                        headers, upload.platform, upload.mapping, answers_by_value(upload.stats)
                    )
                    frames = build_frames(
                        headers, rows, chunk.first_row, layout, project_currency, dates=dates
                    )
                    target = WriteTarget(
                        upload.shop,
                        upload.project_id,
                        upload_id,
                        layout.platform,
                        **write_mode(conn, upload_id, upload.project_id, chunk.superseded),
                    )
                    with conn.begin_nested():
                        counts, _ = write_chunk(conn, target, frames)
                except (ChunkDataError, DBAPIError) as exc:
                    if isinstance(exc, DBAPIError) and is_transient(exc):
                        raise  # the whole dry run is retried
                    if isinstance(exc, ChunkDataError):
                        code, message = exc.code, str(exc)
                    else:
                        code, message = describe_error(exc)
                    outcomes[position] = ChunkOutcome(
                        chunk.chunk_index,
                        UploadStatus.FAILED,
                        chunk.row_count,
                        errors={"error": {"code": code, "message": message}},
                    )
                    continue
                stats = {
                    "tables": counts.as_dict(),
                    "by_code": rows_by_code(frames.rejected),
                    "imported_rows": frames.imported_rows,
                    "rejected_rows": frames.rejected_rows,
                }
                outcomes[position] = ChunkOutcome(
                    chunk.chunk_index,
                    UploadStatus.COMPLETED,
                    chunk.row_count,
                    frames.imported_rows,
                    frames.rejected_rows,
                    stats={
                        **stats,
                        "keys": counts.keys_packed(upload.project_id),
                        "warnings": frames.warnings,
                    },
                    errors={"rejected": frames.rejected},
                )
                written.append((chunk.id, json.dumps(frames.rejected), {"dry_run": True, **stats}))
            currency = currency_summary(conn, upload_id, upload.project_id)

    outcome = aggregate(outcomes, upload.stats, error, dry_run=True)
    result = UploadResult(
        upload_id=upload_id,
        status=outcome.status.value,
        platform=(upload.stats or {}).get("detection", {}).get("platform", upload.platform),
        **outcome.counters.model_dump(),
        stats=outcome.stats(max(time.perf_counter() - started, 1e-6), currency, keep=False),
        errors=outcome.errors(),
        dry_run=True,
    )
    _record(upload_id, result, written)
    log_result(result)
    return result


def _record(
    upload_id: int, result: UploadResult, outcomes: list[tuple[int, str, dict[str, Any]]]
) -> None:
    """Store the prediction on the upload and the would-be rejections on pending chunks."""
    with transaction() as conn:
        for chunk_id, rejected, stats in outcomes:
            conn.execute(
                update(CsvUploadChunk)
                .where(
                    CsvUploadChunk.id == chunk_id,
                    CsvUploadChunk.status == UploadStatus.PENDING,
                )
                .values(errors=chunk_errors(json.loads(rejected)), stats=stats)
            )
        current = conn.execute(select(CsvUpload.stats).where(CsvUpload.id == upload_id)).scalar()
        prediction = result.model_dump(mode="json", exclude={"upload_id", "dry_run"})
        prediction["at"] = now().isoformat()
        conn.execute(
            update(CsvUpload)
            .where(CsvUpload.id == upload_id)
            .values(stats={**(current or {}), "dry_run": prediction})
        )


def read_dry_run(upload_id: int) -> UploadResult | None:
    """The last dry run's prediction for an upload, or None if it never had one."""
    with get_engine().connect() as conn:
        stats = conn.execute(select(CsvUpload.stats).where(CsvUpload.id == upload_id)).scalar()
    prediction = (stats or {}).get("dry_run")
    if prediction is None:
        return None
    fields = {k: v for k, v in prediction.items() if k != "at"}
    return UploadResult(upload_id=upload_id, dry_run=True, **fields)
