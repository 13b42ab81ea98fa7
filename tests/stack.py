"""One locked production stack for the end-to-end tests, as README's "Running it for real" runs it.

A Prefect server on its own PostgreSQL database with basic auth and CSRF protection on, the
deployments of prefect.yaml, a process worker and the webhook; worker and webhook log in to
PostgreSQL as an import role granted by `pledgeflow db grant`, through a URL carrying a password.
Every client sends the auth string. Started by the first test that uses it and stopped as soon as
the next test on the worker does not (conftest keeps a group's tests together), so that its idle
server, worker and webhook do not take CPU from the rest of the session (registered in conftest).
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from deployments.webhook import sign
from pledgeflow.grants import grant_import_role
from tests.conftest import ADMIN_URL, REDIS_URL, RUN_ID, use_database
from tests.services import BIN, ROOT, free_port, process, run, wait_until

# The secrets of the stack; tests assert that none of them is ever shown.
AUTH_USER = "admin"
AUTH_PASSWORD = "Auth-Pw-" + uuid.uuid4().hex
AUTH_STRING = f"{AUTH_USER}:{AUTH_PASSWORD}"
DB_PASSWORD = "Db-Pw-" + uuid.uuid4().hex
WEBHOOK_SECRET = "Hook-" + uuid.uuid4().hex
WEBHOOK_PREVIOUS_SECRET = "Hook-Prev-" + uuid.uuid4().hex
SECRETS = {
    "database password": DB_PASSWORD,
    "auth password": AUTH_PASSWORD,
    "auth header": base64.b64encode(AUTH_STRING.encode()).decode(),
    "webhook secret": WEBHOOK_SECRET,
    "previous webhook secret": WEBHOOK_PREVIOUS_SECRET,
}
IMPORT_ROLE = f"pledgeflow_import_{RUN_ID}"


@dataclass
class Stack:
    """Addresses of the running server and webhook, an authenticated API client, and the
    client environment (the import role's database URL, the auth string, the webhook keys)."""

    base: str
    api: str
    webhook: str
    env: dict[str, str]
    client: httpx.Client
    logs: Path
    # A folder for files to import. The worker has no PLEDGEFLOW_IMPORT_ROOT, so that the
    # deployments tests see import-file runs refused for the want of one.
    imports: Path
    # The worker's pid: its runs are forked by its warm parent (pledgeflow/warm_start.py).
    worker_pid: int

    def flow_runs(self, deployment: str = "process-upload") -> list[dict[str, Any]]:
        response = self.client.post(
            "/flow_runs/filter",
            json={"deployments": {"name": {"any_": [deployment]}}, "limit": 200},
        )
        response.raise_for_status()
        return list(response.json())

    def finished_chunk_runs(self, run_id: str) -> list[dict[str, Any]]:
        """The chunk task runs of a flow run that the server has recorded as finished."""
        response = self.client.post(
            "/task_runs/filter",
            json={
                "flow_runs": {"id": {"any_": [run_id]}},
                "task_runs": {"name": {"like_": "chunk-"}},
                "limit": 200,
            },
        )
        return [t for t in response.json() if t["state_type"] in {"COMPLETED", "FAILED"}]

    def flow_run(self, run_id: str) -> dict[str, Any]:
        response = self.client.get(f"/flow_runs/{run_id}")
        response.raise_for_status()
        return dict(response.json())

    def wait_for_final(self, run_id: str, timeout: float = 300) -> dict[str, Any]:
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
        secret: str = WEBHOOK_SECRET,
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


def api_client(api: str) -> httpx.Client:
    """An httpx client that authenticates and carries a CSRF token, as Prefect's client does."""
    client = httpx.Client(base_url=api, auth=(AUTH_USER, AUTH_PASSWORD), timeout=30)
    name = "pledgeflow-tests-" + uuid.uuid4().hex
    response = client.get("/csrf-token", params={"client": name})
    response.raise_for_status()
    client.headers.update(
        {"Prefect-Csrf-Token": response.json()["token"], "Prefect-Csrf-Client": name}
    )
    return client


@pytest.fixture(scope="session")
def import_role_url(pg_url: str) -> Iterator[str]:
    """The test database as the import role, with a password (trust auth does not check it)."""
    use_database(pg_url)
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{IMPORT_ROLE}" LOGIN')
    try:
        grant_import_role(IMPORT_ROLE)
        url = make_url(pg_url).set(username=IMPORT_ROLE, password=DB_PASSWORD)
        yield url.render_as_string(hide_password=False)
    finally:
        with owner.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                {"r": IMPORT_ROLE},
            )
            conn.exec_driver_sql(f'DROP OWNED BY "{IMPORT_ROLE}"')
            conn.exec_driver_sql(f'DROP ROLE "{IMPORT_ROLE}"')
        owner.dispose()


class _Running:
    """The stack while it runs: what stops it, or the error its start ended with."""

    exits: ExitStack | None = None
    stack: Stack | None = None
    error: BaseException | None = None


@pytest.fixture
def stack(import_role_url: str, tmp_path_factory: pytest.TempPathFactory) -> Stack:
    """The running stack, started by the first test that asks for it (a failed start fails
    every test asking, as a session fixture's would)."""
    if _Running.error is not None:
        raise _Running.error
    if _Running.stack is None:
        exits = ExitStack()
        try:
            _Running.stack = exits.enter_context(_locked_stack(import_role_url, tmp_path_factory))
        except BaseException as exc:
            _Running.error = exc
            exits.close()
            raise
        _Running.exits = exits
    return _Running.stack


def stop_stack() -> None:
    """Stop the stack if it runs; the next test asking for it starts a new one."""
    exits, _Running.exits, _Running.stack = _Running.exits, None, None
    if exits is not None:
        exits.close()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop the stack after the last of a run of tests using it, before the session's fixtures
    (its database and import role) go: an idle server polled every second by its worker took a
    few percent of a core until the worker's session ended."""
    if "stack" in getattr(item, "fixturenames", ()) and (
        nextitem is None or "stack" not in getattr(nextitem, "fixturenames", ())
    ):
        stop_stack()


def pytest_sessionfinish() -> None:
    stop_stack()


@contextmanager
def _locked_stack(
    import_role_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A locked Prefect server (on its own PostgreSQL database), the deployments, a worker and
    the webhook, the last two as the import role."""
    home = tmp_path_factory.mktemp("prefect-home")
    imports = tmp_path_factory.mktemp("imports")
    server_db = f"pledgeflow_test_{RUN_ID}_prefect"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{server_db}"'))
    server_url = make_url(ADMIN_URL).set(drivername="postgresql+asyncpg", database=server_db)
    port, hook_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{port}"
    api = f"{base_url}/api"
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PREFECT_") and not k.startswith("PLEDGEFLOW_")
    }
    base.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_EPHEMERAL_ENABLED="false",
    )
    server_env = {
        **base,
        "PREFECT_API_DATABASE_CONNECTION_URL": server_url.render_as_string(hide_password=False),
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
        "PREFECT_SERVER_API_AUTH_STRING": AUTH_STRING,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
        # A run refused a concurrency slot asks again after 2 s, not Prefect's 30 s, so tests
        # that deliver more uploads than the limit are not three 30 s waves long.
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
        # No runs from deployment schedules: the sweep's every-ten-minutes run (asserted as
        # declared, never run by a test) cost a flow-run process (~5 s of CPU) per stack and
        # ten minutes, and landed between the tests' runs on the worker.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    client_env = {
        **base,
        "PREFECT_API_URL": api,
        "PREFECT_API_AUTH_STRING": AUTH_STRING,
        "PLEDGEFLOW_DATABASE_URL": import_role_url,
        "PLEDGEFLOW_REDIS_URL": REDIS_URL,
        "PLEDGEFLOW_REDIS_KEY_PREFIX": f"pledgeflow-test-{RUN_ID}",
        "PLEDGEFLOW_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "PLEDGEFLOW_WEBHOOK_PREVIOUS_SECRET": WEBHOOK_PREVIOUS_SECRET,
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
                300,  # its migrations on a fresh database take minutes on a busy machine
                "the Prefect server",
                log=logs / "server.log",
            )
            prefect = str(BIN / "prefect")
            run(
                [prefect, "work-pool", "create", "pledgeflow-process", "--type", "process"],
                client_env,
            )
            # Deploying imports every flow's module: minutes on a loaded machine.
            run([prefect, "--no-prompt", "deploy", "--all"], client_env, cwd=ROOT, timeout=600)
            with (
                process(
                    [prefect, "worker", "start", "--pool", "pledgeflow-process"],
                    client_env,
                    logs / "worker.log",
                ) as worker,
                process(
                    [str(BIN / "pledgeflow"), "webhook", "--port", str(hook_port)],
                    client_env,
                    logs / "webhook.log",
                ),
                closing(api_client(api)) as client,
            ):
                hook = f"http://127.0.0.1:{hook_port}"
                wait_until(
                    lambda: httpx.get(f"{hook}/healthz", timeout=2).status_code == 200,
                    180,
                    "the webhook",
                    log=logs / "webhook.log",
                )
                yield Stack(
                    base=base_url,
                    api=api,
                    webhook=hook,
                    env=client_env,
                    client=client,
                    logs=logs,
                    imports=imports,
                    worker_pid=worker.pid,
                )
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{server_db}" WITH (FORCE)'))
        admin.dispose()
