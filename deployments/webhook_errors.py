"""What the webhook answers when a request fails unexpectedly: a JSON error (503 when a service
it needs is down, so the web app retries; 500 otherwise) and one log line, never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pledgeflow.command_errors import debugging, describe

logger = logging.getLogger("deployments.webhook")
# Failures of a service the webhook needs: the request can succeed when it is back.
UNAVAILABLE = frozenset(
    {"prefect_unavailable", "database_unreachable", "database_missing", "schema_missing"}
)


class OneLineErrors:
    """ASGI middleware: an exception before the response started becomes a JSON answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if started or debugging():
                raise
            shown = describe(exc)
            logger.error("webhook request failed: %s: %s", shown.code, shown.message)
            unavailable = shown.code in UNAVAILABLE
            content: dict[str, Any] = {
                "error": shown.code,
                "message": "a service the webhook needs is unavailable; retry later"
                if unavailable
                else "the webhook failed; its log has the reason",
            }
            response = JSONResponse(status_code=503 if unavailable else 500, content=content)
            await response(scope, receive, send)
