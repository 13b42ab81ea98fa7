"""The upload flow: start, one task per chunk on a bounded runner, aggregate, report."""

from __future__ import annotations

from typing import Annotated, Any

from prefect import State, flow, tags, unmapped
from prefect.futures import as_completed
from prefect.states import Failed

from pledgeflow.parameters import MappingParameter, RowFraction, UploadId, titled
from pledgeflow.results import result_config
from pledgeflow.runners import chunk_task_runner
from pledgeflow.status import UploadResult
from tasks.chunks import chunk_task_with
from tasks.mapping_requests import ask_for_mapping
from tasks.observability import (
    Progress,
    fail_upload_on_crash,
    label_flow_run,
    log_pledgeflow_to_run,
    report_upload_task,
)
from tasks.uploads import (
    aggregate_upload_task,
    dry_run_upload_task,
    record_unstarted_chunks_task,
    start_upload_task,
)


def needs_mapping(
    error: dict[str, Any] | None, mapping: dict[str, Any] | None, dry_run: bool
) -> bool:
    """Whether to ask for a mapping: the layout is unknown and the caller gave none."""
    return bool(error and error.get("code") == "unknown_layout" and not mapping and not dry_run)


def import_upload(
    upload_id: int,
    mapping: dict[str, Any] | None = None,
    dry_run: bool = False,
    max_rejected_fraction: float | None = None,
) -> UploadResult | State[Any]:
    """The steps of importing an upload, run inside the calling flow run (no subflow), so the
    run a person started or retries is the one holding the chunks, tags and artifacts.

    Returns the result, or a Failed state saying why when the upload did not end COMPLETED
    (an expected outcome: the run ends with that message, without a traceback).
    """
    log_pledgeflow_to_run()
    plan = start_upload_task(upload_id, mapping, dry_run, max_rejected_fraction)
    if needs_mapping(plan.error, mapping, dry_run):
        asked = ask_for_mapping(upload_id)
        if asked is not None:
            plan = start_upload_task(upload_id, asked, dry_run, max_rejected_fraction)
    label_flow_run(plan.shop, plan.platform, upload_id)
    if dry_run:
        result = dry_run_upload_task(upload_id, plan.error)
    else:
        chunk_task = chunk_task_with(result_config())
        progress = Progress(upload_id, len(plan.chunk_ids))
        with tags(f"upload:{upload_id}"):
            futures = chunk_task.map(
                plan.chunk_ids, upload_key=unmapped(plan.upload_key), chunk_name=plan.chunk_names
            )
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
    failure = result.run_failure()
    if failure is not None:
        return Failed(message=failure)
    return result


@flow(
    name="process-upload",
    flow_run_name="upload-{upload_id}",
    description="Import every unfinished chunk of an upload, then aggregate and report it.",
    task_runner=chunk_task_runner(),
    on_failure=[fail_upload_on_crash],
    on_crashed=[fail_upload_on_crash],
)
def process_upload(
    upload_id: Annotated[UploadId, titled("Upload id")],
    mapping: MappingParameter = None,
    dry_run: Annotated[bool, titled("Dry run")] = False,
    max_rejected_fraction: Annotated[RowFraction | None, titled("Most rejected rows")] = None,
) -> UploadResult | State[Any]:
    """Import every unfinished chunk of an upload concurrently, then aggregate the outcome.

    The run fails when the upload does not end COMPLETED (a chunk failed, the layout or a date
    column is unreadable, every row was rejected or more than `max_rejected_fraction` of them,
    or another run still holds a chunk).

    Args:
        upload_id: Id of the csv_upload row the web app (or `import`) stored.
        mapping: Canonical field to source header; replaces detection, stored on the upload.
        dry_run: Predict the outcome and write nothing to the data tables.
        max_rejected_fraction: Fail the upload when more of its rows are rejected (0 to 1).
    """
    return import_upload(upload_id, mapping, dry_run, max_rejected_fraction)
