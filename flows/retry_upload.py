"""The retry flow: re-run the failed and stuck chunks of an upload and re-aggregate it."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import State, flow
from pydantic import Field

from flows.process_upload import import_upload
from pledgeflow.parameters import UploadId, titled
from pledgeflow.runners import chunk_task_runner
from pledgeflow.status import UploadResult
from tasks.observability import fail_upload_on_crash

RetryAttempt = Annotated[int, Field(ge=0, le=100)]


@flow(
    name="retry-upload",
    flow_run_name="retry-upload-{upload_id}",
    description="Re-run the failed chunks of an upload and those stuck past their lease.",
    task_runner=chunk_task_runner(),
    on_failure=[fail_upload_on_crash],
    on_crashed=[fail_upload_on_crash],
)
def retry_upload(
    upload_id: Annotated[UploadId, titled("Upload id")],
    attempt: Annotated[RetryAttempt, titled("Automated attempt")] = 0,
) -> UploadResult | State[Any]:
    """Re-run what did not complete: chunks FAILED, PENDING, or PROCESSING past their lease.

    Completed chunks are skipped (their results are cached, and the database claim refuses
    them), so retrying is safe at any time.

    Args:
        upload_id: Id of the upload to finish.
        attempt: Which automated retry this is: 0 when a person starts it (automation: 1-3).
    """
    return import_upload(upload_id)
