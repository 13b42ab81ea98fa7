"""End to end: a real Prefect server and worker from prefect.yaml, and the webhook."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from deployments.webhook import sign
from pledgeflow.staging import stage_file
from tests.conftest import ADMIN_URL, REDIS_URL, RUN_ID
from tests.exports import backers, render
from tests.helpers import count, write_file
from tests.services import BIN, ROOT, free_port, process, run, wait_until

pytestmark = pytest.mark.slow
SECRET = "e2e-" + uuid.uuid4().hex


@dataclass
class Stack:
    """Addresses of the running Prefect server and webhook, and the client environment."""

    api: str
    webhook: str
    env: dict[str, str]

    def flow_runs(self, deployment: str = "process-upload") -> list[dict[str, Any]]:
        response = httpx.post(
            f"{self.api}/flow_runs/filter",
            json={"deployments": {"name": {"any_": [deployment]}}, "limit": 50},
            timeout=10,
        )
        response.raise_for_status()
        return list(response.json())

    def flow_run(self, run_id: str) -> dict[str, Any]:
        response = httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=10)
        response.raise_for_status()
        return dict(response.json())

    def wait_for_final(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        final: dict[str, Any] = {}

        def done() -> bool:
            final.update(self.flow_run(run_id))
            return final["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

        wait_until(done, timeout, f"flow run {run_id} to finish", interval=1)
        return final

    def post(
        self,
        body: bytes,
        *,
        timestamp: str | None = None,
        secret: str = SECRET,
        signature: str | None = None,
    ) -> httpx.Response:
        stamp = timestamp or str(int(time.time()))
        headers = {
            "content-type": "application/json",
            "X-Pledgeflow-Timestamp": stamp,
            "X-Pledgeflow-Signature": sign(secret, stamp, body) if signature is None else signature,
        }
        return httpx.post(
            f"{self.webhook}/webhooks/uploads", content=body, headers=headers, timeout=30
        )


@pytest.fixture(scope="module")
def stack(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A Prefect server (on its own PostgreSQL database), the deployments, a worker, the webhook."""
    home = tmp_path_factory.mktemp("prefect-home")
    server_db = f"pledgeflow_test_{RUN_ID}_prefect"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{server_db}"'))
    server_url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=server_db)
    port, hook_port = free_port(), free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_ENABLED="false",
    )
    server_env = {
        **base,
        "PREFECT_API_DATABASE_CONNECTION_URL": server_url.render_as_string(hide_password=False),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
    }
    client_env = {
        **base,
        "PREFECT_API_URL": api,
        "PLEDGEFLOW_DATABASE_URL": pg_url,
        "PLEDGEFLOW_REDIS_URL": REDIS_URL,
        "PLEDGEFLOW_REDIS_KEY_PREFIX": f"pledgeflow-test-{RUN_ID}",
        "PLEDGEFLOW_WEBHOOK_SECRET": SECRET,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "5",
    }
    logs = tmp_path_factory.mktemp("logs")
    try:
        with process(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            server_env,
            logs / "server.log",
        ):
            wait_until(
                lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
                90,
                "the Prefect server",
                log=logs / "server.log",
            )
            run(
                [
                    str(BIN / "prefect"),
                    "work-pool",
                    "create",
                    "pledgeflow-process",
                    "--type",
                    "process",
                ],
                client_env,
            )
            run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], client_env, cwd=ROOT)
            with (
                process(
                    [str(BIN / "prefect"), "worker", "start", "--pool", "pledgeflow-process"],
                    client_env,
                    logs / "worker.log",
                ),
                process(
                    [str(BIN / "pledgeflow"), "webhook", "--port", str(hook_port)],
                    client_env,
                    logs / "webhook.log",
                ),
            ):
                hook = f"http://127.0.0.1:{hook_port}"
                wait_until(
                    lambda: httpx.get(f"{hook}/healthz", timeout=2).status_code == 200,
                    60,
                    "the webhook",
                    log=logs / "webhook.log",
                )
                yield Stack(api=api, webhook=hook, env=client_env)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{server_db}" WITH (FORCE)'))
        admin.dispose()


def stage(tmp_path: Path, name: str, rows: int = 30) -> int:
    path = write_file(tmp_path, name, render("2020", backers(rows)))
    return stage_file(path, shop="hook.example.com", project="Hooked", chunk_size=10)


def body(upload_id: object) -> bytes:
    return json.dumps({"upload_id": upload_id}).encode()


def test_deployments_carry_descriptions_tags_and_enforced_schemas(stack: Stack) -> None:
    response = httpx.post(f"{stack.api}/deployments/filter", json={}, timeout=10)
    deployments = {d["name"]: d for d in response.json()}
    assert set(deployments) == {
        "import-file",
        "process-upload",
        "retry-upload",
        "sweep-stuck-chunks",
    }
    for deployment in deployments.values():
        assert deployment["description"]
        assert "pledgeflow" in deployment["tags"]
        assert deployment["enforce_parameter_schema"] is True
        assert deployment["work_pool_name"] == "pledgeflow-process"
    schema = deployments["process-upload"]["parameter_openapi_schema"]
    assert schema["properties"]["upload_id"]["type"] == "integer"
    assert schema["required"] == ["upload_id"]
    chunk = deployments["import-file"]["parameter_openapi_schema"]["properties"]["chunk_size"]
    assert (chunk["minimum"], chunk["maximum"]) == (1, 100_000)
    sweep = httpx.get(
        f"{stack.api}/deployments/{deployments['sweep-stuck-chunks']['id']}/schedules",
        timeout=10,
    ).json()
    assert sweep[0]["schedule"]["interval"] == 600


def test_webhook_creates_exactly_one_run_that_imports_the_upload(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    upload_id = stage(tmp_path, "hook.csv")

    first = stack.post(body(upload_id))
    again = stack.post(body(upload_id))

    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    run_id = first.json()["flow_run_id"]
    assert again.json()["flow_run_id"] == run_id
    assert first.json()["url"].endswith(f"/runs/flow-run/{run_id}")
    assert [r["id"] for r in stack.flow_runs()] == [run_id]
    final = stack.wait_for_final(run_id)
    assert final["state_type"] == "COMPLETED", final["state"]
    assert final["name"] == f"upload-{upload_id}"
    assert {"webhook", "shop:hook.example.com", "platform:kickstarter"} <= set(final["tags"])
    assert count(db, "SELECT count(*) FROM pledge WHERE upload_id = :u", u=upload_id) == 30
    with db.connect() as conn:
        upload = conn.execute(
            text("SELECT status, flow_run_id, imported_rows FROM csv_upload WHERE id = :u"),
            {"u": upload_id},
        ).one()
    assert tuple(upload) == ("COMPLETED", run_id, 30)


def test_webhook_refuses_bad_requests_without_creating_runs(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    upload_id = stage(tmp_path, "refused.csv", rows=3)
    before = len(stack.flow_runs())
    stale = str(int(time.time()) - 301)

    answers = {
        "bad signature": stack.post(body(upload_id), secret="not-the-secret"),
        "missing signature": stack.post(body(upload_id), signature=""),
        "stale timestamp": stack.post(body(upload_id), timestamp=stale),
        "unknown upload": stack.post(body(upload_id + 10_000)),
        "string id": stack.post(body(str(upload_id))),
        "not json": stack.post(b"upload_id=1"),
    }

    assert {k: r.status_code for k, r in answers.items()} == {
        "bad signature": 401,
        "missing signature": 401,
        "stale timestamp": 401,
        "unknown upload": 404,
        "string id": 422,
        "not json": 422,
    }
    assert SECRET not in "".join(r.text for r in answers.values())
    assert len(stack.flow_runs()) == before
    assert httpx.get(f"{stack.webhook}/healthz", timeout=5).status_code == 200
