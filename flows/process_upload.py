"""The upload flow: start, one task per chunk on a bounded runner, aggregate, report."""

from __future__ import annotations

from prefect import flow, tags, unmapped
from prefect.futures import as_completed

from pledgeflow.results import result_config
from pledgeflow.runners import chunk_task_runner
from pledgeflow.uploads import UploadResult
from tasks.chunks import chunk_task_with
from tasks.observability import Progress, fail_upload_on_crash, label_flow_run, report_upload_task
from tasks.uploads import (
    aggregate_upload_task,
    dry_run_upload_task,
    record_unstarted_chunks_task,
    start_upload_task,
)


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
    description="Import every unfinished chunk of an upload, then aggregate and report it.",
    task_runner=chunk_task_runner(),
    on_failure=[fail_upload_on_crash],
    on_crashed=[fail_upload_on_crash],
)
def process_upload(
    upload_id: int,
    mapping: dict[str, str | list[str]] | None = None,
    dry_run: bool = False,
) -> UploadResult:
    """Import every unfinished chunk of an upload concurrently, then aggregate the outcome.

    `mapping` (canonical field -> header) replaces detection and is stored on the upload;
    `dry_run` predicts the outcome and writes nothing to the data tables. The run fails when
    the upload ends FAILED (a chunk failed, or the layout is unknown); rejected rows alone do
    not fail it.
    """
    plan = start_upload_task(upload_id, mapping, dry_run)
    label_flow_run(plan.shop, plan.platform)
    if dry_run:
        result = dry_run_upload_task(upload_id, plan.error)
    else:
        chunk_task = chunk_task_with(result_config())
        progress = Progress(upload_id, len(plan.chunk_ids))
        with tags(f"upload:{upload_id}"):
            futures = chunk_task.map(plan.chunk_ids, upload_key=unmapped(plan.upload_key))
            chunk_of = {id(f): c for f, c in zip(futures, plan.chunk_ids, strict=True)}
            failed_tasks: dict[int, str] = {}
            for future in as_completed(list(futures)):
                progress.advance()
                if future.state.is_failed():
                    failed_tasks[chunk_of[id(future)]] = future.state.message or ""
        if failed_tasks:
            record_unstarted_chunks_task(failed_tasks)
        result = aggregate_upload_task(upload_id)
    report_upload_task(upload_id, plan.shop)
    if result.status == "FAILED":
        raise UploadFailedError(result)
    return result
