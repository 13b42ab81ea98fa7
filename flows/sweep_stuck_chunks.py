"""The sweep: finish uploads whose chunks a dead worker left PROCESSING past their lease."""

from __future__ import annotations

from prefect import flow

from flows.process_upload import process_upload
from tasks.uploads import find_stuck_uploads_task


@flow(
    name="sweep-stuck-chunks",
    flow_run_name="sweep-stuck-chunks",
    description="Reclaim chunks stuck in PROCESSING past the lease and finish their uploads.",
)
def sweep_stuck_chunks() -> list[int]:
    """Re-run every upload holding a chunk whose lease ran out; return their ids."""
    upload_ids = find_stuck_uploads_task()
    for upload_id in upload_ids:
        process_upload(upload_id, return_state=True)
    return upload_ids
