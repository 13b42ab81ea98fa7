"""Upload-level tasks: start an upload, aggregate it, stage a file into one, find stuck ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import task

from pledgeflow.chunks import fail_unstarted_chunks
from pledgeflow.dry_runs import dry_run_upload
from pledgeflow.staging import stage_file
from pledgeflow.uploads import (
    UploadPlan,
    UploadResult,
    aggregate_upload,
    find_stuck_uploads,
    start_upload,
)
from tasks.retry_policy import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient

_retry: dict[str, Any] = {
    "retries": RETRIES,
    "retry_delay_seconds": RETRY_DELAYS,
    "retry_jitter_factor": RETRY_JITTER,
    "retry_condition_fn": retry_if_transient,
}


@task(name="start-upload", task_run_name="start-upload-{upload_id}", **_retry)
def start_upload_task(
    upload_id: int, mapping: dict[str, Any] | None = None, dry_run: bool = False
) -> UploadPlan:
    """Detect the upload's layout (or apply its mapping) and list the chunks to process."""
    return start_upload(upload_id, mapping, dry_run=dry_run)


@task(name="dry-run-upload", task_run_name="dry-run-upload-{upload_id}", **_retry)
def dry_run_upload_task(upload_id: int, error: dict[str, Any] | None = None) -> UploadResult:
    """Predict what importing the upload would write, in a transaction that is rolled back."""
    return dry_run_upload(upload_id, error)


@task(name="aggregate-upload", task_run_name="aggregate-upload-{upload_id}", **_retry)
def aggregate_upload_task(upload_id: int) -> UploadResult:
    """Set the upload's counters, stats, errors and final status."""
    return aggregate_upload(upload_id)


@task(name="stage-file", task_run_name="stage-{shop}-{project}", **_retry)
def stage_file_task(
    path: str,
    shop: str,
    project: str,
    platform: str | None,
    chunk_size: int,
    currency: str | None = None,
) -> int:
    """Stream a CSV file into a new upload and its chunks; return the upload id."""
    return stage_file(
        Path(path),
        shop=shop,
        project=project,
        platform=platform,
        chunk_size=chunk_size,
        currency=currency,
    )


@task(name="record-unstarted-chunks", **_retry)
def record_unstarted_chunks_task(errors: dict[int, str]) -> int:
    """Mark FAILED the chunks whose task failed before claiming them (e.g. Redis was lost)."""
    return fail_unstarted_chunks(errors)


@task(name="find-stuck-uploads", **_retry)
def find_stuck_uploads_task() -> list[int]:
    """Ids of uploads with a chunk left PROCESSING past its lease."""
    return find_stuck_uploads()
