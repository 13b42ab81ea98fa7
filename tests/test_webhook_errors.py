"""An unexpected failure inside the webhook: a JSON answer and one log line, no traceback."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine

from deployments.webhook_errors import OneLineErrors


def failing_app(exc: Exception) -> TestClient:
    app = FastAPI()
    app.add_middleware(OneLineErrors)

    @app.post("/webhooks/uploads")
    async def fail() -> None:
        raise exc

    # raise_server_exceptions: an exception the middleware let through would fail the test.
    return TestClient(app, raise_server_exceptions=True)


def database_down() -> Exception:
    try:
        create_engine("postgresql+psycopg://postgres@127.0.0.1:1/x").connect()
    except Exception as exc:
        return exc
    raise AssertionError("a connection to port 1 succeeded")


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: httpx.ConnectError("All connection attempts failed"), 503, "prefect_unavailable"),
        (database_down, 503, "database_unreachable"),
        (lambda: KeyError("surprise"), 500, "unexpected_error"),
    ],
)
def test_a_failure_answers_json_and_logs_one_line(
    make: object, status: int, code: str, caplog: pytest.LogCaptureFixture
) -> None:
    exc = make()  # type: ignore[operator]
    with caplog.at_level(logging.ERROR, logger="deployments.webhook"):
        answer = failing_app(exc).post("/webhooks/uploads", content=b"{}")

    assert answer.status_code == status
    assert answer.json()["error"] == code
    assert "Traceback" not in answer.text
    records = [r for r in caplog.records if r.name == "deployments.webhook"]
    assert len(records) == 1
    assert records[0].exc_info is None
    assert records[0].getMessage().startswith(f"webhook request failed: {code}: ")
