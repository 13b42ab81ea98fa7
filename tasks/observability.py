"""What operators see in the Prefect UI: run tags, progress, the summary artifact and events."""

from __future__ import annotations

import logging
import re
from typing import Any
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)
from prefect.client.orchestration import get_client
from prefect.events import emit_event
from prefect.exceptions import FailedRun
from prefect.runtime import flow_run as current_flow_run
from prefect.settings import PREFECT_LOGGING_EXTRA_LOGGERS

from pledgeflow.failures import is_transient
from pledgeflow.retries import retry_transient
from pledgeflow.staging import upload_of_flow_run
from pledgeflow.status import UploadResult, fail_after_run, flow_run_owner
from pledgeflow.summaries import chunk_outcomes, summary_markdown
from pledgeflow.uploads import read_upload, upload_shop

logger = logging.getLogger(__name__)
TRANSIENT, DATA = "transient", "data"
# Chunk failures a later retry can heal: the database stayed lost or busy past the retry
# budget, or the task failed around the chunk (a lost result store) before claiming it.
TRANSIENT_CHUNK_CODES = frozenset({"transient_database_error", "task_failed"})
# Automated retries of one upload (prefect.yaml's retry trigger) before a person must look.
AUTO_RETRY_ATTEMPTS = 3
CODE = re.compile(r"^[a-z_]+:")


class ExpectedFailureFilter(logging.Filter):
    """Drops the traceback Prefect's process entry point logs when a flow returned a Failed
    state (a refused file, a failed upload): the state message says why, and `FailedRun` is
    only Prefect re-raising that state. Exceptions a flow raises keep their tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (
            isinstance(exc, FailedRun)
            and record.getMessage() == "Engine execution exited with unexpected exception"
        )


def log_pledgeflow_to_run() -> None:
    """Let pledgeflow's INFO lines (ids and counts) reach the run's logs where the worker asks
    for them (`PREFECT_LOGGING_EXTRA_LOGGERS=pledgeflow`, prefect.yaml): Prefect attaches its
    handlers to that logger but leaves its level at the root's WARNING. Keep expected failures'
    tracebacks out of the run's logs."""
    if "pledgeflow" in PREFECT_LOGGING_EXTRA_LOGGERS.value():
        logging.getLogger("pledgeflow").setLevel(logging.INFO)
    runs = logging.getLogger("prefect.flow_runs")
    if not any(isinstance(f, ExpectedFailureFilter) for f in runs.filters):
        runs.addFilter(ExpectedFailureFilter())


def label_flow_run(shop: str, platform: str | None, upload_id: int | None = None) -> None:
    """Tag the running flow run with its shop, platform and upload, so that filtering runs by
    them finds the run that has Retry; a platform learnt later replaces `platform:unknown`."""
    run_id = current_flow_run.id
    if run_id is None:
        return
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(run_id)))
        wanted = {f"shop:{shop}", f"platform:{platform or 'unknown'}"}
        if upload_id is not None:
            wanted.add(f"upload:{upload_id}")
        kept = {t for t in run.tags if not (platform and t == "platform:unknown")}
        if not wanted <= kept or kept != set(run.tags):
            client.update_flow_run(run.id, tags=sorted(kept | wanted))


def name_flow_run(name: str) -> None:
    """Rename the running flow run, once its upload is known (an import's run is created
    before it has staged one), so that its name carries the upload like every other run's."""
    run_id = current_flow_run.id
    if run_id is None:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(UUID(str(run_id)), name=name)


class Progress:
    """A progress artifact that moves as chunks finish, with the upload's own counters (those
    `pledgeflow status`, the CLI's bar and the web app show), so a retry shows the whole
    upload, not only the chunks it runs."""

    def __init__(self, upload_id: int, total: int) -> None:
        self.upload_id = upload_id
        # Created showing the counters as they stand, rather than created empty and updated at
        # once: one Prefect API call (and one read of the upload) less per run.
        figures = self._figures() if total else None
        progress, description = figures or (
            0.0 if total else 100.0,
            f"Chunks of upload {upload_id} finished",
        )
        self.artifact_id: UUID = create_progress_artifact(  # type: ignore[assignment]
            progress=progress,
            key=f"upload-{upload_id}-progress",
            description=description,
        )

    def advance(self) -> None:
        """Show the upload's counters as they stand after one more chunk finished. A display
        never fails the import: a transient database error is retried within the usual budget,
        and if the database is still unreachable this update is skipped (the chunks retry on
        their own, and the next chunk to finish, or the aggregation, updates the figures)."""
        figures = self._figures()
        if figures is None:
            return
        progress, description = figures
        update_progress_artifact(
            artifact_id=self.artifact_id, progress=progress, description=description
        )

    def _figures(self) -> tuple[float, str] | None:
        """The artifact's progress (percent of chunks finished) and description from the
        upload's counters; None, logged, when the database stays unavailable."""
        try:
            upload = retry_transient(read_upload)(self.upload_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            logger.warning(
                "upload %s: progress not updated, database unavailable (%s)",
                self.upload_id,
                type(exc).__name__,
            )
            return None
        done = upload.completed_chunks + upload.failed_chunks
        description = (
            f"{upload.completed_chunks:,} of {upload.total_chunks:,} chunks completed, "
            f"{upload.imported_rows + upload.rejected_rows:,} of {upload.total_rows:,} rows"
        )
        if upload.failed_chunks:
            description += f" ({upload.failed_chunks:,} chunks failed)"
        return round(100.0 * done / max(upload.total_chunks, 1), 2), description


def _shop_resource(shop: str) -> dict[str, str]:
    # Named, so that the event feed shows the whole domain rather than its last dotted part.
    return {
        "prefect.resource.id": f"pledgeflow.shop.{shop}",
        "prefect.resource.role": "shop",
        "prefect.resource.name": shop,
    }


def emit_upload_event(
    result: UploadResult, shop: str | None = None, chunks: list[dict[str, Any]] | None = None
) -> None:
    """Emit `pledgeflow.upload.completed` or `.failed` with the upload as the resource; a
    failure carries its cause (`pledgeflow.cause`: transient or data) and whether the shipped
    automation may retry it (`pledgeflow.auto_retry`, bounded by the run's retry attempt)."""
    outcome = "completed" if result.status == "COMPLETED" else "failed"
    shop = shop or upload_shop(result.upload_id)
    resource = {
        "prefect.resource.id": f"pledgeflow.upload.{result.upload_id}",
        "prefect.resource.name": f"upload {result.upload_id}",
        "pledgeflow.upload_id": str(result.upload_id),
        "pledgeflow.platform": result.platform or "unknown",
    }
    if shop:
        resource["pledgeflow.shop"] = shop
    error = (result.errors or {}).get("error") or {}
    attempt = retry_attempt()
    payload: dict[str, Any] = {
        "upload_id": result.upload_id,
        "status": result.status,
        "total_rows": result.total_rows,
        "imported_rows": result.imported_rows,
        "rejected_rows": result.rejected_rows,
        "failed_chunks": result.failed_chunks,
        "error_code": error.get("code"),
        "attempt": attempt,
    }
    if outcome == "failed":
        cause = failure_cause(error.get("code"), chunks or [])
        resource["pledgeflow.cause"] = cause
        retryable = cause == TRANSIENT and attempt < AUTO_RETRY_ATTEMPTS
        resource["pledgeflow.auto_retry"] = "yes" if retryable else "no"
    related = [_shop_resource(shop)] if shop else []
    emit_event(
        event=f"pledgeflow.upload.{outcome}", resource=resource, payload=payload, related=related
    )


def emit_refusal_event(shop: str, code: str, message: str) -> None:
    """Emit `pledgeflow.upload.failed` for an import that failed before an upload existed,
    naming the shop; the resource is the flow run, there being no upload."""
    resource = {
        "prefect.resource.id": f"pledgeflow.import.{current_flow_run.id or 'local'}",
        "prefect.resource.name": f"import for {shop}",
        "pledgeflow.shop": shop,
        "pledgeflow.cause": DATA,
        "pledgeflow.auto_retry": "no",
    }
    emit_event(
        event="pledgeflow.upload.failed",
        resource=resource,
        payload={"status": "FAILED", "error_code": code, "message": message[:400]},
        related=[_shop_resource(shop)],
    )


def failure_cause(code: str | None, chunks: list[dict[str, Any]]) -> str:
    """`transient` when the upload failed only for reasons a later retry can heal (chunks that
    failed on a lost or busy database, or a run that died), else `data`."""
    if code == "flow_failed":
        return TRANSIENT
    if code != "chunks_failed":
        return DATA
    failed = [c for c in chunks if c.get("status") == "FAILED"]
    healing = all(c.get("error") in TRANSIENT_CHUNK_CODES for c in failed)
    return TRANSIENT if failed and healing else DATA


def retry_attempt() -> int:
    """Which automated retry the current run is: its `attempt` parameter, 0 for others."""
    try:
        return int((current_flow_run.parameters or {}).get("attempt") or 0)
    except (TypeError, ValueError):
        return 0


@task(name="report-upload", task_run_name="report-upload-{upload_id}")
def report_upload_task(upload_id: int, shop: str) -> None:
    """Publish the summary artifact and the completion or failure event of an upload."""
    result = retry_transient(read_upload)(upload_id)
    chunks = retry_transient(chunk_outcomes)(upload_id)
    create_markdown_artifact(
        markdown=summary_markdown(result, chunks),
        key=f"upload-{upload_id}-summary",
        description=f"Outcome of upload {upload_id}",
    )
    emit_upload_event(result, shop, chunks)


def fail_upload_on_crash(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook: if the run failed or crashed before finishing the upload, mark it FAILED; an
    import run that failed before staging an upload emits a failure event naming the shop."""
    parameters = flow_run.parameters or {}
    upload_id = parameters.get("upload_id") or retry_transient(upload_of_flow_run)(str(flow_run.id))
    if upload_id is None:
        if parameters.get("shop"):
            message = state.message or "flow run failed"
            code = message.split(":", 1)[0] if CODE.match(message) else "flow_failed"
            emit_refusal_event(str(parameters["shop"]), code, message)
        return
    if parameters.get("dry_run"):
        return  # a dry run never changes the upload's status
    message = state.message or "flow run failed"
    owner = flow_run_owner(flow_run.id)
    if retry_transient(fail_after_run)(int(upload_id), owner, message):
        logger.warning(
            "upload %s marked FAILED after its flow run ended %s", upload_id, state.type.value
        )
        emit_upload_event(retry_transient(read_upload)(int(upload_id)))
