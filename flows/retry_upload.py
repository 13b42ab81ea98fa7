"""The retry flow: re-run the failed and stuck chunks of an upload and re-aggregate it."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import State
from pydantic import Field

from flows.process_upload import import_upload, upload_flow
from pledgeflow.parameters import UploadId, titled
from pledgeflow.status import UploadResult

RetryAttempt = Annotated[int, Field(ge=0, le=100)]


@upload_flow("retry-upload", run_name="retry-upload-{upload_id}")
def retry_upload(
    upload_id: Annotated[UploadId, titled("Upload id")],
    attempt: Annotated[RetryAttempt, titled("Automated attempt")] = 0,
) -> UploadResult | State[Any]:
    """Re-run the failed chunks of an upload and those stuck past their lease.

    What did not complete runs again: chunks FAILED, PENDING, or PROCESSING past their lease.
    Completed chunks are skipped (their results are cached, and the database claim refuses
    them), so retrying is safe at any time.

    Args:
        upload_id: Id of the upload to finish.
        attempt: Which automated retry this is: 0 when a person starts it (automation: 1-3).
    """
    return import_upload(upload_id)
