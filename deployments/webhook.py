"""The webhook the web app calls once it has stored an upload: one flow run per upload.

`POST /webhooks/uploads` with body `{"upload_id": <int, or its decimal string>}` (optionally
`"shop": <domain>` and `"max_rejected_fraction": <0..1>`),
header `X-Pledgeflow-Timestamp` (Unix seconds) and header
`X-Pledgeflow-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, keyed with
`PLEDGEFLOW_WEBHOOK_SECRET` (or, while the web app switches keys,
`PLEDGEFLOW_WEBHOOK_PREVIOUS_SECRET`). The signature and timestamp are checked before anything else;
the run is created with an idempotency key derived from the upload, so a redelivered webhook
answers with the same run.

It refuses before it reads: a body over `PLEDGEFLOW_WEBHOOK_MAX_BODY_BYTES` is answered 413
from its Content-Length, or as soon as the stream passes the limit, before any signature work;
a body not sent within `BODY_TIMEOUT_SECONDS` gets 408. `serve` bounds the rest: request heads
(size and time), idle connections, and how many requests are served at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from uuid import UUID

import h11
import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from prefect.client.orchestration import PrefectClient, get_client
from prefect.exceptions import PrefectHTTPStatusError
from prefect.settings import PREFECT_API_URL, PREFECT_UI_URL
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from uvicorn.protocols.http.h11_impl import H11Protocol

from deployments.webhook_errors import OneLineErrors
from pledgeflow.limits import shop_lane_lock, upload_queue
from pledgeflow.parameters import ShopDomain, UploadId
from pledgeflow.settings import get_settings
from pledgeflow.uploads import find_upload_key, record_flow_run, upload_shop

logger = logging.getLogger(__name__)

PROCESS_UPLOAD_DEPLOYMENT = "process-upload/process-upload"
MAX_SKEW_SECONDS = 300
TIMESTAMP_HEADER = "X-Pledgeflow-Timestamp"
SIGNATURE_HEADER = "X-Pledgeflow-Signature"
BODY_TIMEOUT_SECONDS = 10.0
HEAD_TIMEOUT_SECONDS = 10.0
IDLE_TIMEOUT_SECONDS = 5
MAX_HEAD_BYTES = 16 * 1024
MAX_CONCURRENT_REQUESTS = 32
# How long the deployment's id and work pool are reused before they are read again.
DEPLOYMENT_TTL_SECONDS = 30.0

_deployments: dict[tuple[str, str | None], tuple[float, UUID, str | None]] = {}


class UploadStored(BaseModel):
    """The webhook's body."""

    model_config = ConfigDict(extra="forbid", strict=True)

    upload_id: UploadId
    # When the web app names the shop, an upload of any other shop is answered as unknown.
    shop: ShopDomain | None = None
    # Fail the upload when a larger share of its rows is rejected (default: only when all are).
    max_rejected_fraction: float | None = Field(default=None, ge=0, le=1)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_ok(
    secrets: list[str], timestamp: str | None, signature: str | None, body: bytes
) -> bool:
    """Whether the request is signed with one of the secrets and sent within five minutes."""
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    if abs(time.time() - int(timestamp)) > MAX_SKEW_SECONDS:
        return False
    # Every key is compared, each in constant time, so timing shows neither which one matched
    # nor how much of the signature did.
    matches = [hmac.compare_digest(sign(s, timestamp, body), signature) for s in secrets]
    return any(matches)


def _error(status: int, code: str, message: str, *, close: bool = False) -> JSONResponse:
    # `close`: the rest of the request is never read, so the connection cannot be reused.
    headers = {"Connection": "close"} if close else None
    return JSONResponse(
        status_code=status, content={"error": code, "message": message}, headers=headers
    )


class BodyRefusedError(Exception):
    """A request body refused unread: too large (413) or too slow (408)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, read only while it stays within `limit` bytes and the time limit."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise BodyRefusedError(413, "body_too_large", f"the body is limited to {limit} bytes")
    body = bytearray()
    try:
        async with asyncio.timeout(BODY_TIMEOUT_SECONDS):
            async for part in request.stream():
                body += part
                if len(body) > limit:
                    raise BodyRefusedError(
                        413, "body_too_large", f"the body is limited to {limit} bytes"
                    )
    except TimeoutError as exc:
        raise BodyRefusedError(
            408, "body_timeout", f"the body was not sent within {BODY_TIMEOUT_SECONDS:.0f} s"
        ) from exc
    return bytes(body)


class _PrefectClients:
    """Prefect clients kept for the served process, each lent to one request at a time: a
    request reuses a client's connections and CSRF token instead of opening a client (and
    fetching a token) of its own. One client shared by concurrent requests would fetch a token
    for each of them under one client id, and the server keeps only the newest: the others'
    requests are refused (403, "Invalid CSRF token")."""

    def __init__(self, stack: AsyncExitStack) -> None:
        self._stack = stack
        self._idle: list[PrefectClient] = []

    @asynccontextmanager
    async def lend(self) -> AsyncIterator[PrefectClient]:
        """A client no other request is using; at most one per request served at once."""
        client = (
            self._idle.pop() if self._idle else await self._stack.enter_async_context(get_client())
        )
        try:
            yield client
        finally:
            self._idle.append(client)


@asynccontextmanager
async def _prefect_clients(app: FastAPI) -> AsyncIterator[None]:
    async with AsyncExitStack() as stack:
        app.state.prefect = _PrefectClients(stack)
        try:
            yield
        finally:
            app.state.prefect = None


@asynccontextmanager
async def _prefect(app: FastAPI) -> AsyncIterator[PrefectClient]:
    clients = getattr(app.state, "prefect", None)
    if clients is not None:
        async with clients.lend() as client:
            yield client
        return
    # Served without the lifespan (a test client): one client per request.
    async with get_client() as client:
        yield client


async def _deployment(
    client: PrefectClient, name: str, *, fresh: bool = False
) -> tuple[UUID, str | None]:
    """The deployment's id and work pool, read at most every DEPLOYMENT_TTL_SECONDS: under a
    burst the Prefect server answers each call in seconds, and these change only on deploy."""
    key = (name, PREFECT_API_URL.value())
    cached = _deployments.get(key)
    if cached and not fresh and time.monotonic() - cached[0] < DEPLOYMENT_TTL_SECONDS:
        return cached[1], cached[2]
    deployment = await client.read_deployment_by_name(name)
    _deployments[key] = (time.monotonic(), deployment.id, deployment.work_pool_name)
    return deployment.id, deployment.work_pool_name


def create_app(deployment_name: str = PROCESS_UPLOAD_DEPLOYMENT) -> FastAPI:
    """Build the receiver; refuses to start without a secret or a Prefect server to talk to."""
    settings = get_settings()
    current = settings.webhook_secret
    if current is None or not current.get_secret_value():
        raise RuntimeError("PLEDGEFLOW_WEBHOOK_SECRET must be set to serve the webhook")
    secrets = settings.webhook_secrets
    fair_share = settings.shop_fair_share
    if not PREFECT_API_URL.value():
        # Without it Prefect would start an empty temporary server where no deployment exists.
        raise RuntimeError("PREFECT_API_URL must point at the Prefect server with the deployments")

    app = FastAPI(
        title="pledgeflow webhook", docs_url=None, redoc_url=None, lifespan=_prefect_clients
    )
    app.add_middleware(OneLineErrors)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks/uploads", status_code=202)
    async def upload_stored(request: Request) -> Any:
        try:
            body = await read_body(request, get_settings().webhook_max_body_bytes)
        except BodyRefusedError as exc:
            return _error(exc.status, exc.code, str(exc), close=True)
        if not signature_ok(
            secrets,
            request.headers.get(TIMESTAMP_HEADER),
            request.headers.get(SIGNATURE_HEADER),
            body,
        ):
            return _error(401, "bad_signature", "missing or invalid signature or timestamp")
        try:
            event = UploadStored.model_validate_json(body)
        except ValidationError:
            return _error(
                422,
                "malformed_body",
                'expected {"upload_id": <integer from 1 to 2^63-1, or its decimal string>, '
                '"shop"?: ..., '
                '"max_rejected_fraction"?: <number from 0 to 1>}',
            )
        key = await run_in_threadpool(find_upload_key, event.upload_id, event.shop)
        if key is None:
            return _error(404, "unknown_upload", f"upload {event.upload_id} does not exist")
        shop = event.shop or await run_in_threadpool(upload_shop, event.upload_id) or ""
        parameters: dict[str, Any] = {"upload_id": event.upload_id}
        if event.max_rejected_fraction is not None:
            parameters["max_rejected_fraction"] = event.max_rejected_fraction
        async with _prefect(request.app) as client, shop_lane_lock(shop):
            for fresh in (False, True):
                deployment_id, work_pool = await _deployment(client, deployment_name, fresh=fresh)
                try:
                    # A shop past its fair share of unfinished runs goes to the bulk lane, so
                    # that its burst leaves run slots to other shops (pledgeflow/limits.py).
                    queue = await upload_queue(
                        client, deployment_id, work_pool, shop, event.upload_id, fair_share
                    )
                    run = await client.create_flow_run_from_deployment(
                        deployment_id,
                        parameters=parameters,
                        idempotency_key=f"process-upload-{key}",
                        tags=["webhook", f"upload:{event.upload_id}", f"shop:{shop}"],
                        work_queue_name=queue,
                    )
                    break
                except PrefectHTTPStatusError as exc:
                    # 404: the deployment was deleted and deployed again under a new id; once
                    # read afresh it is gone for good, and the request fails.
                    if fresh or exc.response.status_code != 404:
                        raise
        await run_in_threadpool(record_flow_run, event.upload_id, str(run.id))
        logger.info("upload %s: flow run %s", event.upload_id, run.id)
        ui = PREFECT_UI_URL.value()
        return {
            "flow_run_id": str(run.id),
            "url": f"{ui}/runs/flow-run/{run.id}" if ui else None,
        }

    return app


class BoundedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request head: a client that opens a
    connection, or sends part of a head, and then stalls is disconnected."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm_head_deadline()

    def _arm_head_deadline(self) -> None:
        self.loop.call_later(HEAD_TIMEOUT_SECONDS, self._drop_if_no_head)

    def _drop_if_no_head(self) -> None:
        # h11 stays IDLE until a whole request head has arrived; an idle keep-alive
        # connection closed here would have been closed by uvicorn's keep-alive timeout.
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self.transport.close()


def serve(app: FastAPI, host: str, port: int) -> None:
    """Serve the webhook with uvicorn, bounded: request heads (size and time), idle
    keep-alive connections, and requests at once (more are answered 503)."""
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        http=BoundedH11Protocol,
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        timeout_keep_alive=IDLE_TIMEOUT_SECONDS,
        limit_concurrency=MAX_CONCURRENT_REQUESTS,
    )
