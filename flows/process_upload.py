"""The upload flow: start, one task per chunk on a bounded runner, aggregate."""

from __future__ import annotations

from prefect import flow, tags, unmapped
from prefect.task_runners import ThreadPoolTaskRunner

from pledgeflow.results import result_config
from pledgeflow.settings import get_settings
from pledgeflow.uploads import UploadResult
from tasks.chunks import chunk_task_with
from tasks.uploads import aggregate_upload_task, dry_run_upload_task, start_upload_task


class UploadFailedError(RuntimeError):
    """Raised at the end of a flow run whose upload ended FAILED, so the run fails too."""

    def __init__(self, result: UploadResult) -> None:
        error = (result.errors or {}).get("error") or {}
        super().__init__(
            f"upload {result.upload_id} failed: {error.get('code', 'unknown')}: "
            f"{error.get('message', '')}"
        )
        self.result = result


@flow(
    name="process-upload",
    flow_run_name="upload-{upload_id}",
    task_runner=ThreadPoolTaskRunner(max_workers=get_settings().task_concurrency),  # type: ignore[arg-type]
)
def process_upload(
    upload_id: int,
    mapping: dict[str, str | list[str]] | None = None,
    dry_run: bool = False,
) -> UploadResult:
    """Import every unfinished chunk of an upload concurrently, then aggregate the outcome.

    `mapping` (canonical field -> header) replaces detection and is stored on the upload;
    `dry_run` predicts the outcome and writes nothing to the data tables.
    """
    plan = start_upload_task(upload_id, mapping, dry_run)
    if dry_run:
        result = dry_run_upload_task(upload_id, plan.error)
    else:
        chunk_task = chunk_task_with(result_config())
        with tags(f"shop:{plan.shop}", f"platform:{plan.platform}", f"upload:{upload_id}"):
            futures = chunk_task.map(plan.chunk_ids, upload_key=unmapped(plan.upload_key))
            futures.wait()
        result = aggregate_upload_task(upload_id)
    if result.status == "FAILED":
        raise UploadFailedError(result)
    return result
