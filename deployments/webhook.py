"""The webhook the web app calls once it has stored an upload: one flow run per upload.

`POST /webhooks/uploads` with body `{"upload_id": <int>}` (optionally `"shop": <domain>`),
header `X-Pledgeflow-Timestamp` (Unix seconds) and header
`X-Pledgeflow-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, keyed with
`PLEDGEFLOW_WEBHOOK_SECRET`. The signature and timestamp are checked before anything else;
the run is created with an idempotency key derived from the upload, so a redelivered webhook
answers with the same run.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from typing import Any

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pledgeflow.settings import get_settings
from pledgeflow.uploads import find_upload_key, record_flow_run

logger = logging.getLogger(__name__)

PROCESS_UPLOAD_DEPLOYMENT = "process-upload/process-upload"
MAX_SKEW_SECONDS = 300
TIMESTAMP_HEADER = "X-Pledgeflow-Timestamp"
SIGNATURE_HEADER = "X-Pledgeflow-Signature"


class UploadStored(BaseModel):
    """The webhook's body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    upload_id: int = Field(gt=0)
    # When the web app names the shop, an upload of any other shop is answered as unknown.
    shop: str | None = Field(default=None, min_length=1)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_ok(secret: str, timestamp: str | None, signature: str | None, body: bytes) -> bool:
    """Whether the request is signed with the secret and sent within five minutes of now."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": code, "message": message})


def create_app(deployment_name: str = PROCESS_UPLOAD_DEPLOYMENT) -> FastAPI:
    """Build the receiver; refuses to start without a secret or a Prefect server to talk to."""
    secret_value = get_settings().webhook_secret
    if secret_value is None or not secret_value.get_secret_value():
        raise RuntimeError("PLEDGEFLOW_WEBHOOK_SECRET must be set to serve the webhook")
    secret = secret_value.get_secret_value()
    if not PREFECT_API_URL.value():
        # Without it Prefect would start an empty temporary server where no deployment exists.
        raise RuntimeError("PREFECT_API_URL must point at the Prefect server with the deployments")

    app = FastAPI(title="pledgeflow webhook", docs_url=None, redoc_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/uploads", status_code=202)
    async def upload_stored(request: Request) -> Any:
        body = await request.body()
        if not signature_ok(
            secret,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
        ):
            return _error(401, "bad_signature", "missing or invalid signature or timestamp")
        try:
            event = UploadStored.model_validate_json(body)
        except ValidationError:
            return _error(
                422, "malformed_body", 'expected {"upload_id": <positive integer>, "shop"?: ...}'
            )
        key = await run_in_threadpool(find_upload_key, event.upload_id, event.shop)
        if key is None:
            return _error(404, "unknown_upload", f"upload {event.upload_id} does not exist")
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(deployment_name)
            run = await client.create_flow_run_from_deployment(
                deployment.id,
                parameters={"upload_id": event.upload_id},
                idempotency_key=f"process-upload-{key}",
                tags=["webhook", f"upload:{event.upload_id}"],
            )
        await run_in_threadpool(record_flow_run, event.upload_id, str(run.id))
        logger.info("upload %s: flow run %s", event.upload_id, run.id)
        ui = PREFECT_UI_URL.value()
        return {
            "flow_run_id": str(run.id),
            "url": f"{ui}/runs/flow-run/{run.id}" if ui else None,
        }

    return app
