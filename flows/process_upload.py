"""The upload flow: start, one task per chunk on a bounded runner, aggregate, report."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, ParamSpec, TypeVar

from prefect import Flow, State, flow

from pledgeflow.heartbeats import stop_joining_heartbeats
from pledgeflow.parameters import MappingParameter, RowFraction, UploadId, titled
from pledgeflow.run_imports import load_run_modules
from pledgeflow.runners import chunk_task_runner
from pledgeflow.status import UploadResult
from tasks.chunks import run_chunk_tasks
from tasks.mapping_requests import plan_upload
from tasks.observability import (
    fail_upload_on_crash,
    label_flow_run,
    log_pledgeflow_to_run,
    report_upload_task,
)
from tasks.uploads import conclude_upload, run_outcome

P = ParamSpec("P")
R = TypeVar("R")
# Every flow that imports an upload is defined here or imports this module: what its runs would
# load in the middle of their first run is loaded with them, and no run's end waits for its
# heartbeat thread (pledgeflow/run_imports.py, pledgeflow/heartbeats.py).
load_run_modules()
stop_joining_heartbeats()


def upload_flow(name: str, run_name: str | None = None) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """The decorator of every flow that imports an upload: its chunk tasks on the bounded
    runner, the hook that fails an upload its run left unfinished, and the first paragraph of
    the flow's docstring as its description."""

    def decorate(function: Callable[P, R]) -> Flow[P, R]:
        summary = (inspect.getdoc(function) or "").split("\n\n", 1)[0]
        return flow(
            name=name,
            flow_run_name=run_name,
            description=" ".join(summary.split()),
            task_runner=chunk_task_runner(),
            on_failure=[fail_upload_on_crash],
            on_crashed=[fail_upload_on_crash],
        )(function)

    return decorate


def import_upload(
    upload_id: int,
    mapping: dict[str, Any] | None = None,
    dry_run: bool = False,
    max_rejected_fraction: float | None = None,
) -> UploadResult | State[Any]:
    """The steps of importing an upload, run inside the calling flow run (no subflow), so the
    run a person started or retries is the one holding the chunks, tags and artifacts.

    Returns the result, or a Failed state saying why when the upload did not end COMPLETED.
    """
    log_pledgeflow_to_run()
    plan = plan_upload(upload_id, mapping, dry_run, max_rejected_fraction)
    label_flow_run(plan.shop, plan.platform, upload_id)
    run_chunk_tasks(plan, dry_run=dry_run)
    result = conclude_upload(plan, dry_run=dry_run)
    report_upload_task(upload_id, plan.shop)
    return run_outcome(result)


@upload_flow("process-upload", run_name="upload-{upload_id}")
def process_upload(
    upload_id: Annotated[UploadId, titled("Upload id")],
    mapping: MappingParameter = None,
    dry_run: Annotated[bool, titled("Dry run")] = False,
    max_rejected_fraction: Annotated[RowFraction | None, titled("Most rejected rows")] = None,
) -> UploadResult | State[Any]:
    """Import every unfinished chunk of an upload, then aggregate and report it.

    The chunks run concurrently. The run fails when the upload does not end COMPLETED (a chunk
    failed, the layout or a date column is unreadable, every row was rejected or more than
    `max_rejected_fraction` of them, or another run still holds a chunk).

    Args:
        upload_id: Id of the csv_upload row the web app (or `import`) stored.
        mapping: Canonical field to source header; replaces detection, stored on the upload.
        dry_run: Predict the outcome and write nothing to the data tables.
        max_rejected_fraction: Fail the upload when more of its rows are rejected (0 to 1).
    """
    return import_upload(upload_id, mapping, dry_run, max_rejected_fraction)
