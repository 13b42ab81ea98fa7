"""What operators see in the Prefect UI: run tags, progress, the summary artifact and events."""

from __future__ import annotations

import logging
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
from prefect.runtime import flow_run as current_flow_run

from pledgeflow.summaries import chunk_outcomes, summary_markdown
from pledgeflow.uploads import UploadResult, fail_unfinished_upload, read_upload

logger = logging.getLogger(__name__)


def label_flow_run(shop: str, platform: str | None) -> None:
    """Tag the running flow run with its shop and platform, so runs can be filtered by them."""
    run_id = current_flow_run.id
    if run_id is None:
        return
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(str(run_id)))
        wanted = {f"shop:{shop}", f"platform:{platform or 'unknown'}"}
        client.update_flow_run(run.id, tags=sorted(set(run.tags) | wanted))


class Progress:
    """A progress artifact that moves as chunks finish."""

    def __init__(self, upload_id: int, total: int) -> None:
        self.total = total
        self.done = 0
        self.artifact_id: UUID = create_progress_artifact(  # type: ignore[assignment]
            progress=0.0 if total else 100.0,
            key=f"upload-{upload_id}-progress",
            description=f"Chunks of upload {upload_id} finished",
        )

    def advance(self) -> None:
        """Count one more finished chunk."""
        self.done += 1
        update_progress_artifact(
            artifact_id=self.artifact_id,
            progress=round(100.0 * self.done / max(self.total, 1), 2),
            description=f"{self.done} of {self.total} chunks finished",
        )


def emit_upload_event(result: UploadResult, shop: str | None = None) -> None:
    """Emit `pledgeflow.upload.completed` or `.failed` with the upload as the resource."""
    outcome = "completed" if result.status == "COMPLETED" else "failed"
    resource = {
        "prefect.resource.id": f"pledgeflow.upload.{result.upload_id}",
        "prefect.resource.name": f"upload {result.upload_id}",
        "pledgeflow.platform": result.platform or "unknown",
    }
    if shop:
        resource["pledgeflow.shop"] = shop
    error = (result.errors or {}).get("error") or {}
    payload: dict[str, Any] = {
        "status": result.status,
        "total_rows": result.total_rows,
        "imported_rows": result.imported_rows,
        "rejected_rows": result.rejected_rows,
        "failed_chunks": result.failed_chunks,
        "error_code": error.get("code"),
    }
    emit_event(event=f"pledgeflow.upload.{outcome}", resource=resource, payload=payload)


@task(name="report-upload", task_run_name="report-upload-{upload_id}")
def report_upload_task(upload_id: int, shop: str) -> None:
    """Publish the summary artifact and the completion or failure event of an upload."""
    result = read_upload(upload_id)
    create_markdown_artifact(
        markdown=summary_markdown(result, chunk_outcomes(upload_id)),
        key=f"upload-{upload_id}-summary",
        description=f"Outcome of upload {upload_id}",
    )
    emit_upload_event(result, shop)


def fail_upload_on_crash(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook: if the run failed or crashed before finishing the upload, mark it FAILED."""
    parameters = flow_run.parameters or {}
    upload_id = parameters.get("upload_id")
    if upload_id is None or parameters.get("dry_run"):
        return  # a dry run never changes the upload's status
    message = (state.message or "flow run failed")[:400]
    result = fail_unfinished_upload(int(upload_id), "flow_failed", message)
    if result is not None:
        logger.warning(
            "upload %s marked FAILED after its flow run ended %s", upload_id, state.type.value
        )
        emit_upload_event(result)
