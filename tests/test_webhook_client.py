"""The served webhook keeps its Prefect clients and reads its deployment once, so a burst of
deliveries costs the busy Prefect server one flow-run creation each, not a client, a CSRF
token and a deployment lookup each (tests/test_deployments_e2e.py delivers concurrently
through a CSRF-protected server)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import PrefectClient
from prefect.deployments.runner import RunnerDeployment
from sqlalchemy.engine import Engine

from deployments import webhook
from deployments.webhook import create_app
from flows.process_upload import process_upload
from pledgeflow_bench.exports import backers
from tests.helpers import configure, deliver, stage_export

SECRET = "client-" + uuid.uuid4().hex


@pytest.fixture
def served(prefect_harness: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The webhook app with its lifespan running, as `pledgeflow webhook` serves it."""
    cast(RunnerDeployment, process_upload.to_deployment(name="process-upload")).apply()
    configure(monkeypatch, webhook_secret=SECRET)
    webhook._deployments.clear()
    with TestClient(create_app()) as client:
        yield client


def _deliver(client: TestClient, upload_id: int) -> Any:
    return deliver(client, SECRET, {"upload_id": upload_id})


def test_deliveries_one_after_another_reuse_one_client_and_one_deployment_lookup(
    db: Engine, tmp_path: Path, served: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"clients": 0, "deployment reads": 0}
    enter, read = PrefectClient.__aenter__, PrefectClient.read_deployment_by_name

    async def counted_enter(self: PrefectClient) -> PrefectClient:
        calls["clients"] += 1
        return await enter(self)

    async def counted_read(self: PrefectClient, name: str, **kw: Any) -> Any:
        calls["deployment reads"] += 1
        return await read(self, name, **kw)

    monkeypatch.setattr(PrefectClient, "__aenter__", counted_enter)
    # The four deliveries fall within one cache period however slow the machine is.
    monkeypatch.setattr(webhook, "DEPLOYMENT_TTL_SECONDS", 3600.0)
    monkeypatch.setattr(PrefectClient, "read_deployment_by_name", counted_read)
    uploads = [
        stage_export(
            tmp_path, f"{n}.csv", backers(2), shop=f"client-{n}.example.com", project="Client"
        )
        for n in range(3)
    ]

    answers = [_deliver(served, u) for u in [*uploads, uploads[0]]]

    assert [a.status_code for a in answers] == [202] * 4, answers[-1].text
    runs = [a.json()["flow_run_id"] for a in answers]
    assert len(set(runs[:3])) == 3 and runs[3] == runs[0]  # the redelivery: the same run
    assert calls == {"clients": 1, "deployment reads": 1}


def test_a_deployment_recreated_under_a_new_id_is_read_again(
    db: Engine, tmp_path: Path, served: TestClient
) -> None:
    first = stage_export(tmp_path, "a.csv", backers(2), shop="again.example.com", project="A")
    assert _deliver(served, first).status_code == 202
    # The cached id now names no deployment (as after a delete and a new deploy).
    for key, (_, _, pool) in list(webhook._deployments.items()):
        webhook._deployments[key] = (time.monotonic(), uuid.uuid4(), pool)
    second = stage_export(tmp_path, "b.csv", backers(2), shop="again.example.com", project="B")

    answer = _deliver(served, second)

    assert answer.status_code == 202, answer.text
