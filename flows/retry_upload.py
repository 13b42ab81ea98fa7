"""The retry flow: re-run the failed and stuck chunks of an upload and re-aggregate it."""

from __future__ import annotations

from prefect import flow

from flows.process_upload import process_upload
from pledgeflow.uploads import UploadResult


@flow(
    name="retry-upload",
    flow_run_name="retry-upload-{upload_id}",
    description="Re-run the failed chunks of an upload and those stuck past their lease.",
)
def retry_upload(upload_id: int) -> UploadResult:
    """Re-run what did not complete: chunks FAILED, PENDING, or PROCESSING past their lease.

    Completed chunks are skipped (their results are cached, and the database claim refuses
    them), so retrying is safe at any time.
    """
    return process_upload(upload_id)
