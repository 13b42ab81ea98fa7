"""Rotating the webhook's secret: the current and the previous key are both accepted."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from fastapi.testclient import TestClient
from prefect.deployments.runner import RunnerDeployment
from sqlalchemy.engine import Engine

from deployments.webhook import create_app, sign, signature_ok
from flows.process_upload import process_upload
from pledgeflow.settings import get_settings
from pledgeflow_bench.exports import backers
from tests.helpers import configure, deliver, stage_export

OLD = "old-" + uuid.uuid4().hex
NEW = "new-" + uuid.uuid4().hex
OTHER = "other-" + uuid.uuid4().hex


def test_a_signature_made_with_either_key_passes_and_any_other_fails() -> None:
    stamp, body = str(int(time.time())), b'{"upload_id": 1}'

    assert signature_ok([NEW, OLD], stamp, sign(NEW, stamp, body), body)
    assert signature_ok([NEW, OLD], stamp, sign(OLD, stamp, body), body)
    assert not signature_ok([NEW, OLD], stamp, sign(OTHER, stamp, body), body)
    assert not signature_ok([NEW], stamp, sign(OLD, stamp, body), body)
    assert not signature_ok([NEW, OLD], stamp, sign(NEW, stamp, body + b" "), body)
    assert not signature_ok([], stamp, sign(NEW, stamp, body), body)


def test_settings_list_the_current_key_first_and_ignore_an_empty_previous_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configure(monkeypatch, webhook_secret=NEW, webhook_previous_secret=OLD)
    assert get_settings().webhook_secrets == [NEW, OLD]
    assert OLD not in repr(get_settings()) and NEW not in repr(get_settings())
    configure(monkeypatch, webhook_previous_secret="")
    assert get_settings().webhook_secrets == [NEW]


@pytest.fixture
def webhook_for(
    prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., TestClient]:
    """Build the webhook as it starts with the given current and previous keys."""
    cast(RunnerDeployment, process_upload.to_deployment(name="process-upload")).apply()

    def build(current: str, previous: str | None = None) -> TestClient:
        configure(monkeypatch, webhook_secret=current, webhook_previous_secret=previous)
        return TestClient(create_app())

    return build


def test_rotating_the_key_as_the_readme_says_fails_no_delivery(
    db: Engine, tmp_path: Path, webhook_for: Callable[..., TestClient]
) -> None:
    def answer_to(client: TestClient, key: str) -> tuple[int, str]:
        # One upload per delivery, each of its own shop: every accepted one is a new run.
        shop = f"rotate-{uuid.uuid4().hex[:8]}.example.com"
        upload_id = stage_export(tmp_path, f"{shop}.csv", backers(2), shop=shop, project="Rotate")
        answer = deliver(client, key, {"upload_id": upload_id})
        return answer.status_code, answer.text

    before = webhook_for(OLD)  # the web app signs with OLD
    during = webhook_for(NEW, OLD)  # step 1: the webhook takes NEW, keeps OLD
    after = webhook_for(NEW)  # step 3: the web app signs with NEW; OLD is dropped
    answers = {
        "before, old key": answer_to(before, OLD),
        "before, new key": answer_to(before, NEW),
        "during, old key": answer_to(during, OLD),
        "during, new key": answer_to(during, NEW),
        "during, other key": answer_to(during, OTHER),
        "after, old key": answer_to(after, OLD),
        "after, new key": answer_to(after, NEW),
    }

    assert {k: status for k, (status, _) in answers.items()} == {
        "before, old key": 202,
        "before, new key": 401,
        "during, old key": 202,
        "during, new key": 202,
        "during, other key": 401,
        "after, old key": 401,
        "after, new key": 202,
    }
    accepted = {json.loads(text)["flow_run_id"] for code, text in answers.values() if code == 202}
    assert len(accepted) == 4
    texts = "".join(text for _, text in answers.values())
    assert OLD not in texts and NEW not in texts
