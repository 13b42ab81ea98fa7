"""No secret and no backer's personal data reaches a log line, a run log, an artifact, an event
or a flow run's parameters, on a run that completes and on one that fails on purpose."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import httpx
import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    LogFilter,
    LogFilterFlowRunId,
)
from prefect.deployments.runner import RunnerDeployment
from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings
from sqlalchemy.engine import Engine, make_url

from deployments.webhook import create_app
from flows.process_upload import process_upload
from pledgeflow.staging import stage_file
from pledgeflow_bench.exports import backers, render
from tests.conftest import use_database
from tests.helpers import configure, deliver, store_web_app_upload, write_file
from tests.services import wait_until

pytestmark = pytest.mark.usefixtures("prefect_harness")

DB_PASSWORD = "Pg-Password-" + hashlib.sha256(b"pledgeflow").hexdigest()[:12]
WEBHOOK_SECRET = "Hook-Secret-" + hashlib.sha256(b"webhook").hexdigest()[:12]
PREVIOUS_SECRET = "Hook-Previous-" + hashlib.sha256(b"previous").hexdigest()[:12]
# Sent by the client on every request (the harness's server does not check it).
AUTH_STRING = "admin:Auth-" + hashlib.sha256(b"prefect").hexdigest()[:12]
SECRETS = (DB_PASSWORD, WEBHOOK_SECRET, PREVIOUS_SECRET, AUTH_STRING.split(":")[1])


@pytest.fixture
def password_url(db: object, pg_url: str) -> Iterator[str]:
    """The test database reached through a URL that carries a password (trust auth ignores it)."""
    url = make_url(pg_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    use_database(url)
    yield url
    use_database(pg_url)


def events_of(flow_run_ids: list[str]) -> list[dict[str, object]]:
    """Every event of the harness's server that relates to one of the flow runs."""
    found: list[dict[str, object]] = []
    # A generous timeout: the harness holds every event of the session, 50 a page.
    response = httpx.post(
        f"{PREFECT_API_URL.value()}/events/filter", json={"limit": 50}, timeout=60
    ).json()
    while True:
        found += response["events"]
        if not response.get("next_page"):
            break
        response = httpx.get(response["next_page"], timeout=60).json()
    return [e for e in found if any(r in json.dumps(e) for r in flow_run_ids)]


def test_no_secret_or_personal_data_in_logs_run_logs_or_artifacts(
    password_url: str,
    db: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, webhook_secret=WEBHOOK_SECRET, webhook_previous_secret=PREVIOUS_SECRET)
    people = backers(12)
    for n, person in enumerate(people):
        person.email = f"private.person{n}@personal-mail.example"
        person.name = f"Secretname Person{n}"
        person.address = f"{n} Hiddenaddress Lane"
        person.survey_at = "2021/01/02, 03:04"
    people[3].pledge = "not money"  # a rejected row: its values must not leak either
    people[5].email = "broken-email-without-at.example"
    path = write_file(tmp_path, "private.csv", render("2017", people))
    personal = [p.email for p in people] + [p.name for p in people] + [p.address for p in people]

    with (
        caplog.at_level(logging.DEBUG),
        temporary_settings(updates={PREFECT_API_AUTH_STRING: AUTH_STRING}),
    ):
        upload_id = stage_file(path, shop="private.example.com", project="P", chunk_size=5)
        state = process_upload(upload_id, return_state=True)
        # A run that fails on purpose: a layout no platform matches, its cells personal data.
        failing = store_web_app_upload(
            db, ["Colour", "Secretname Shape"], [[["Secretname Person0", "0 Hiddenaddress Lane"]]]
        )
        failed = process_upload(failing, return_state=True)
        deployment = cast(RunnerDeployment, process_upload.to_deployment(name="process-upload"))
        deployment.apply()
        client = TestClient(create_app())
        answer = deliver(client, WEBHOOK_SECRET, {"upload_id": upload_id})
        refused = client.post(
            "/webhooks/uploads",
            content=json.dumps({"upload_id": upload_id}).encode(),
            headers={
                "X-Pledgeflow-Timestamp": str(int(time.time())),
                "X-Pledgeflow-Signature": "sha256=00",
            },
        )

    assert state.is_completed()
    assert failed.is_failed()
    assert answer.status_code == 202, answer.text
    assert refused.status_code == 401
    run_ids = [state.state_details.flow_run_id, failed.state_details.flow_run_id]
    events: list[str] = []
    run_logs: list[str] = []

    def shipped() -> bool:
        # Run logs and events reach the server in the background.
        events[:] = [json.dumps(e) for e in events_of([str(r) for r in run_ids])]
        with get_client(sync_client=True) as prefect:
            # These runs' logs only: unfiltered, the server answers the session's first 200.
            mine = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r for r in run_ids if r]))
            run_logs[:] = [log.message for log in prefect.read_logs(log_filter=mine)]
        return (
            any("pledgeflow.upload.failed" in e for e in events)
            and any("pledgeflow.upload.completed" in e for e in events)
            and f"upload {failing} failed: unknown_layout" in "\n".join(run_logs)
        )

    wait_until(shipped, 60, "the runs' logs and events to reach the server")
    with get_client(sync_client=True) as prefect:
        artifacts = [
            json.dumps(a.data)
            for a in prefect.read_artifacts(
                # These runs' artifacts only: unfiltered, the server answers its first 200.
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[r for r in run_ids if r])
                )
            )
        ]
        runs = [prefect.read_flow_run(r).model_dump_json() for r in run_ids if r is not None]
    local = [record.getMessage() for record in caplog.records]
    local += [str(record.args) for record in caplog.records if record.args]
    assert any(f"upload {upload_id}" in line for line in local)
    assert len(artifacts) >= 4
    haystacks = {
        "log records": local,
        "run logs": run_logs,
        "artifacts": artifacts,
        "flow runs (parameters, job variables, states)": runs,
        "events": events,
        "webhook answers": [answer.text, refused.text],
    }
    for where, lines in haystacks.items():
        text_ = "\n".join(lines)
        for secret in (*SECRETS, *personal):
            assert secret not in text_, f"{secret!r} found in {where}"
        assert "@personal-mail.example" not in text_, where
