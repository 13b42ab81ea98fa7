"""End to end: a real Prefect server and worker from prefect.yaml, and the webhook."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
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


def chunk_task_runs(stack: Stack, run_id: str, expected: int) -> list[dict[str, Any]]:
    """The chunk task runs of a flow run, once the server has recorded `expected` of them."""
    found: list[dict[str, Any]] = []

    def recorded() -> bool:
        response = httpx.post(
            f"{stack.api}/task_runs/filter",
            json={
                "flow_runs": {"id": {"any_": [run_id]}},
                "task_runs": {"name": {"like_": "chunk-"}},
                "limit": 200,
            },
            timeout=10,
        )
        found[:] = [t for t in response.json() if t["state_type"] in {"COMPLETED", "FAILED"}]
        return len(found) >= expected

    wait_until(recorded, 60, f"{expected} recorded chunk task runs", interval=1)
    return found


def test_retrying_a_failed_run_reprocesses_only_the_failed_chunk(
    stack: Stack, db: Engine, tmp_path: Path, flaky_pledge: str
) -> None:
    rows = backers(30)
    rows[14].extra["Backer Number"] = flaky_pledge  # data row 15: chunk index 1 of 0..2
    path = write_file(tmp_path, "flaky.csv", render("2020", rows))
    upload_id = stage_file(path, shop="hook.example.com", project="Flaky", chunk_size=10)

    run_id = stack.post(body(upload_id)).json()["flow_run_id"]
    failed = stack.wait_for_final(run_id)
    assert failed["state_type"] == "FAILED"
    first_attempt = chunk_task_runs(stack, run_id, 3)
    assert sorted(t["state_name"] for t in first_attempt) == ["Completed", "Completed", "Failed"]
    with db.connect() as conn:
        assert (
            conn.execute(
                text("SELECT status FROM csv_upload WHERE id = :u"), {"u": upload_id}
            ).scalar()
            == "FAILED"
        )

    retried_at = datetime.now(UTC)
    run([str(BIN / "prefect"), "flow-run", "retry", run_id], stack.env)
    wait_until(lambda: stack.flow_run(run_id)["run_count"] >= 2, 60, "the retry to start")
    final = stack.wait_for_final(run_id)

    assert final["state_type"] == "COMPLETED", final["state"]
    assert final["run_count"] == 2
    # The retried run reuses the task runs that completed (they are not run again) and
    # re-runs the failed one; on a new flow run, the chunks' results would come from Redis.
    after = chunk_task_runs(stack, run_id, 4)
    by_name: dict[str, list[tuple[str, datetime]]] = {}
    for task_run in sorted(after, key=lambda t: t["end_time"]):
        ended = datetime.fromisoformat(task_run["end_time"])
        by_name.setdefault(task_run["name"], []).append((task_run["state_name"], ended))
    with db.connect() as conn:
        chunks = {
            f"chunk-{r.id}": (r.chunk_index, r.attempts, r.status)
            for r in conn.execute(
                text(
                    "SELECT id, chunk_index, attempts, status FROM csv_upload_chunk "
                    "WHERE upload_id = :u"
                ),
                {"u": upload_id},
            )
        }
        upload = conn.execute(
            text("SELECT status, imported_rows FROM csv_upload WHERE id = :u"), {"u": upload_id}
        ).one()
    for name, (index, attempts, status) in chunks.items():
        assert status == "COMPLETED"
        states = [state for state, _ in by_name[name]]
        if index == 1:
            assert attempts == 2
            assert states == ["Failed", "Completed"]
            assert by_name[name][1][1] > retried_at
        else:
            assert attempts == 1
            assert states == ["Completed"]
            assert by_name[name][0][1] < retried_at
    assert tuple(upload) == ("COMPLETED", 30)


def test_two_runs_of_one_upload_process_each_chunk_once(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    upload_id = stage(tmp_path, "twice.csv", rows=60)
    deployment = httpx.get(
        f"{stack.api}/deployments/name/process-upload/process-upload", timeout=10
    ).json()
    run_ids = [
        httpx.post(
            f"{stack.api}/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"upload_id": upload_id}},
            timeout=10,
        ).json()["id"]
        for _ in range(2)
    ]
    assert run_ids[0] != run_ids[1]

    finals = [stack.wait_for_final(r) for r in run_ids]

    assert [f["state_type"] for f in finals] == ["COMPLETED", "COMPLETED"]
    with db.connect() as conn:
        attempts = [
            r.attempts
            for r in conn.execute(
                text("SELECT attempts FROM csv_upload_chunk WHERE upload_id = :u"),
                {"u": upload_id},
            )
        ]
        upload = conn.execute(
            text("SELECT status, imported_rows, completed_chunks FROM csv_upload WHERE id = :u"),
            {"u": upload_id},
        ).one()
    assert attempts == [1] * 6
    assert tuple(upload) == ("COMPLETED", 60, 6)
    assert count(db, "SELECT count(*) FROM pledge WHERE upload_id = :u", u=upload_id) == 60


def test_a_finished_run_leaves_progress_summary_and_completion_event(
    stack: Stack, db: Engine, tmp_path: Path
) -> None:
    rows = backers(12)
    rows[4].email = ""
    path = write_file(tmp_path, "observed.csv", render("2020", rows))
    upload_id = stage_file(path, shop="hook.example.com", project="Observed", chunk_size=5)
    run_id = stack.post(body(upload_id)).json()["flow_run_id"]
    assert stack.wait_for_final(run_id)["state_type"] == "COMPLETED"

    def artifact(key: str) -> dict[str, Any]:
        found = httpx.post(
            f"{stack.api}/artifacts/filter",
            json={"artifacts": {"key": {"any_": [key]}}},
            timeout=10,
        ).json()
        mine = [a for a in found if a["flow_run_id"] == run_id]
        assert len(mine) == 1, (key, found)
        return dict(mine[0])

    progress = artifact(f"upload-{upload_id}-progress")
    summary = artifact(f"upload-{upload_id}-summary")
    assert progress["type"] == "progress"
    assert progress["data"] == 100.0
    assert summary["type"] == "markdown"
    assert f"# Upload {upload_id}: COMPLETED" in summary["data"]
    assert "| 12 | 11 | 1 | 3 | 3 | 0 |" in summary["data"]
    assert "| 5 | Email | missing_email |" in summary["data"]
    assert "@example.com" not in summary["data"]

    events: list[dict[str, Any]] = []

    def emitted() -> bool:
        found = httpx.post(
            f"{stack.api}/events/filter",
            json={
                "filter": {
                    "event": {"name": ["pledgeflow.upload.completed"]},
                    "resource": {"id": [f"pledgeflow.upload.{upload_id}"]},
                },
                "limit": 50,
            },
            timeout=10,
        ).json()["events"]
        flow_run = f"prefect.flow-run.{run_id}"
        events[:] = [
            e
            for e in found
            if any(r.get("prefect.resource.id") == flow_run for r in e.get("related", []))
        ]
        return bool(events)

    wait_until(emitted, 30, "the completion event")
    payload = events[0]["payload"]
    assert (payload["imported_rows"], payload["rejected_rows"], payload["status"]) == (
        11,
        1,
        "COMPLETED",
    )
    assert events[0]["resource"]["pledgeflow.shop"] == "hook.example.com"
