"""Upload-level tasks: start an upload, aggregate it (or predict it), stage a file into one, find
stuck ones; and what a flow run returns for its upload."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import State, task
from prefect.states import Failed

from pledgeflow.dry_runs import dry_run_upload
from pledgeflow.staging import StagingError, stage_file
from pledgeflow.staging_watch import current_watch
from pledgeflow.status import UploadResult, fail_unstarted_chunks, find_stuck_uploads
from pledgeflow.uploads import UploadPlan, aggregate_upload, start_upload
from schemas.mappings import ColumnMapping, MappingError
from tasks.retry_policy import retry_transient

logger = logging.getLogger(__name__)
# Transient database errors are retried inside each task for a time budget (retry_policy.py).
_retry: dict[str, Any] = {"retries": 0}


@task(name="start-upload", task_run_name="start-upload-{upload_id}", **_retry)
def start_upload_task(
    upload_id: int,
    mapping: dict[str, Any] | None = None,
    dry_run: bool = False,
    max_rejected_fraction: float | None = None,
) -> UploadPlan:
    """Detect the upload's layout (or apply its mapping) and list the chunks to process."""
    return retry_transient(start_upload)(
        upload_id, mapping, dry_run=dry_run, max_rejected_fraction=max_rejected_fraction
    )


@task(name="dry-run-upload", task_run_name="dry-run-upload-{upload_id}", **_retry)
def dry_run_upload_task(upload_id: int, error: dict[str, Any] | None = None) -> UploadResult:
    """Predict what importing the upload would write, in a transaction that is rolled back."""
    return retry_transient(dry_run_upload)(upload_id, error)


@task(name="aggregate-upload", task_run_name="aggregate-upload-{upload_id}", **_retry)
def aggregate_upload_task(upload_id: int) -> UploadResult:
    """Set the upload's counters, stats, errors and final status."""
    return retry_transient(aggregate_upload)(upload_id)


def conclude_upload(plan: UploadPlan, *, dry_run: bool = False) -> UploadResult:
    """The upload's outcome: aggregated from its chunks, or, for a dry run, predicted."""
    if dry_run:
        return dry_run_upload_task(plan.upload_id, plan.error)
    return aggregate_upload_task(plan.upload_id)


def run_outcome(result: UploadResult) -> UploadResult | State[Any]:
    """What the flow run returns: the result, or a Failed state saying why when the upload did
    not end COMPLETED (`UploadResult.run_failure`; an expected outcome: the run ends with that
    message, no traceback)."""
    failure = result.run_failure()
    return result if failure is None else Failed(message=failure)


@task(name="stage-file", task_run_name="stage-{shop}-{project}", **_retry)
def stage_file_task(
    path: str,
    shop: str,
    project: str,
    platform: str | None,
    chunk_size: int | None,
    currency: str | None = None,
    mapping: dict[str, Any] | None = None,
    root_required: bool = False,
    flow_run_id: str | None = None,
) -> int | State[Any]:
    """Stream a CSV file into a new upload and its chunks; return the upload id (the one
    `flow_run_id` staged already, if any), or a Failed state saying why the file was refused
    (an expected outcome, so no traceback). A caller running the flow in its own process
    (`pledgeflow import`) is told the rows read, the upload and the refusal (`staging_watch`).
    """
    watch = current_watch()
    try:
        upload_id = retry_transient(stage_file)(
            Path(path),
            shop=shop,
            project=project,
            platform=platform,
            chunk_size=chunk_size,
            currency=currency,
            mapping=ColumnMapping.from_dict(mapping) if mapping else None,
            root_required=root_required,
            on_rows=watch.on_rows if watch else None,
            flow_run_id=flow_run_id,
        )
    except (StagingError, MappingError) as exc:
        if watch is not None:
            watch.refused(exc)
        code = getattr(exc, "code", "invalid_mapping")
        hint = getattr(exc, "hint", None)
        message = f"{code}: {exc}" + (f" ({hint})" if hint else "")
        logger.warning("file refused for shop %s: %s", shop, code)
        return Failed(message=message)
    if watch is not None:
        watch.staged(upload_id)
    return upload_id


@task(name="record-unstarted-chunks", **_retry)
def record_unstarted_chunks_task(errors: dict[int, str]) -> int:
    """Mark FAILED the chunks whose task failed before claiming them (e.g. Redis was lost)."""
    return retry_transient(fail_unstarted_chunks)(errors)


@task(name="find-stuck-uploads", **_retry)
def find_stuck_uploads_task() -> list[int]:
    """Ids of uploads with a chunk left PROCESSING past its lease."""
    return retry_transient(find_stuck_uploads)()
