"""No secret and no backer's personal data reaches a log line, a run log or an artifact."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from fastapi.testclient import TestClient
from prefect.client.orchestration import get_client
from prefect.deployments.runner import RunnerDeployment
from sqlalchemy.engine import make_url

from deployments.webhook import create_app, sign
from flows.process_upload import process_upload
from pledgeflow.settings import get_settings
from pledgeflow.staging import stage_file
from tests.conftest import use_database
from tests.exports import backers, render
from tests.helpers import write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")

DB_PASSWORD = "Pg-Password-" + hashlib.sha256(b"pledgeflow").hexdigest()[:12]
WEBHOOK_SECRET = "Hook-Secret-" + hashlib.sha256(b"webhook").hexdigest()[:12]


@pytest.fixture
def password_url(db: object, pg_url: str) -> Iterator[str]:
    """The test database reached through a URL that carries a password (trust auth ignores it)."""
    url = make_url(pg_url).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    use_database(url)
    yield url
    use_database(pg_url)


def test_no_secret_or_personal_data_in_logs_run_logs_or_artifacts(
    password_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLEDGEFLOW_WEBHOOK_SECRET", WEBHOOK_SECRET)
    get_settings.cache_clear()
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

    with caplog.at_level(logging.DEBUG):
        upload_id = stage_file(path, shop="private.example.com", project="P", chunk_size=5)
        state = process_upload(upload_id, return_state=True)
        deployment = cast(RunnerDeployment, process_upload.to_deployment(name="process-upload"))
        deployment.apply()
        client = TestClient(create_app())
        body = json.dumps({"upload_id": upload_id}).encode()
        stamp = str(int(time.time()))
        answer = client.post(
            "/webhooks/uploads",
            content=body,
            headers={
                "X-Pledgeflow-Timestamp": stamp,
                "X-Pledgeflow-Signature": sign(WEBHOOK_SECRET, stamp, body),
            },
        )
        refused = client.post(
            "/webhooks/uploads",
            content=body,
            headers={"X-Pledgeflow-Timestamp": stamp, "X-Pledgeflow-Signature": "sha256=00"},
        )
    get_settings.cache_clear()

    assert state.is_completed()
    assert answer.status_code == 202, answer.text
    assert refused.status_code == 401
    flow_run_id = state.state_details.flow_run_id
    with get_client(sync_client=True) as prefect:
        run_logs = [log.message for log in prefect.read_logs()]
        artifacts = [
            json.dumps(a.data) for a in prefect.read_artifacts() if a.flow_run_id == flow_run_id
        ]
    local = [record.getMessage() for record in caplog.records]
    local += [str(record.args) for record in caplog.records if record.args]
    assert any(f"upload {upload_id}" in line for line in local)
    assert len(artifacts) >= 2
    haystacks = {
        "log records": local,
        "run logs": run_logs,
        "artifacts": artifacts,
        "webhook answers": [answer.text, refused.text],
    }
    for where, lines in haystacks.items():
        text_ = "\n".join(lines)
        for secret in (DB_PASSWORD, WEBHOOK_SECRET, *personal):
            assert secret not in text_, f"{secret!r} found in {where}"
        assert "@personal-mail.example" not in text_, where
