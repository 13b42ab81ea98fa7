"""An upload that imports nothing did not succeed; `max_rejected_fraction` sets a lower bar."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy.engine import Engine

from deployments.webhook import UploadStored
from flows.process_upload import process_upload
from pledgeflow.dry_runs import dry_run_upload
from pledgeflow.staging import stage_file
from pledgeflow.status import rejection_failure
from pledgeflow.uploads import read_upload, start_upload
from pledgeflow_bench.exports import backers, render
from tests.exports_corpus import KICKSTARTER_2015
from tests.helpers import count, failed_events, run_plain, write_file

MONEY = ("Pledge Amount", "Shipping Amount", "Reward Minimum")


@pytest.mark.usefixtures("prefect_harness")
def test_every_row_rejected_fails_the_upload_the_flow_run_and_fires_the_event(
    db: Engine, tmp_path: Path
) -> None:
    path = write_file(tmp_path, "na.csv", KICKSTARTER_2015.render(**dict.fromkeys(MONEY, "n/a")))
    upload_id = stage_file(path, shop="na.example.com", project="NA", chunk_size=2)

    state = process_upload(upload_id, return_state=True)

    assert state.is_failed()
    result = read_upload(upload_id)
    assert (result.status, result.imported_rows, result.rejected_rows) == ("FAILED", 0, 3)
    assert (result.completed_chunks, result.failed_chunks) == (2, 0)
    error = (result.errors or {})["error"]
    assert error["code"] == "all_rows_rejected"
    assert error["top_codes"] == {"invalid_money": 3}
    assert "n/a" not in error["message"]  # run history and artifacts carry no values
    # by_code counts rows, as rejected_rows does: three cells of each row, three rows.
    assert (result.errors or {})["by_code"] == {"invalid_money": 3}
    assert len((result.errors or {})["sample"]) == 9
    assert count(db, "SELECT count(*) FROM pledge WHERE upload_id = :u", u=upload_id) == 0
    deadline = time.monotonic() + 120  # a cap: the server records events in batches
    while not failed_events(state.state_details.flow_run_id):
        assert time.monotonic() < deadline, "no pledgeflow.upload.failed event"
        time.sleep(0.5)
    event = failed_events(state.state_details.flow_run_id)[0]
    assert event["payload"]["error_code"] == "all_rows_rejected"


@pytest.mark.usefixtures("prefect_harness")
def test_max_rejected_fraction_fails_above_it_and_is_kept_for_a_retry(
    db: Engine, tmp_path: Path
) -> None:
    people = backers(5)
    people[0].email = ""
    path = write_file(tmp_path, "one-in-five.csv", render("2020", people))
    lenient = stage_file(path, shop="frac.example.com", project="Lenient")
    strict = stage_file(path, shop="frac.example.com", project="Strict")

    assert process_upload(lenient, max_rejected_fraction=0.2, return_state=True).is_completed()
    state = process_upload(strict, max_rejected_fraction=0.19, return_state=True)

    assert state.is_failed()
    result = read_upload(strict)
    assert (result.status, result.imported_rows, result.rejected_rows) == ("FAILED", 4, 1)
    assert (result.errors or {})["error"]["code"] == "too_many_rejected"
    assert (result.errors or {})["error"]["top_codes"] == {"missing_email": 1}
    # A retry that does not name the threshold keeps the one the upload was started with.
    assert process_upload(strict, return_state=True).is_failed()
    assert read_upload(strict).status == "FAILED"


def test_rejection_failure_rules() -> None:
    assert rejection_failure(0, 0, 0, {}) is None  # a header-only file completes
    assert rejection_failure(10, 10, 0, {}, 0.0) is None
    assert rejection_failure(10, 9, 1, {"invalid_date": 1}) is None  # default: only at 100%
    assert rejection_failure(10, 9, 1, {"invalid_date": 1}, 0.1) is None  # not above it
    above = rejection_failure(10, 8, 2, {"invalid_date": 2}, 0.1)
    assert above is not None and above["code"] == "too_many_rejected"
    every = rejection_failure(4, 0, 4, {"missing_email": 3, "invalid_money": 2}, 1.0)
    assert every is not None and every["code"] == "all_rows_rejected"
    assert every["top_codes"] == {"missing_email": 3, "invalid_money": 2}


def test_header_only_file_is_not_all_rows_rejected(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "empty.csv", KICKSTARTER_2015.render().splitlines()[0] + b"\r\n")
    upload_id = stage_file(path, shop="empty.example.com", project="Empty")

    result = run_plain(upload_id)

    assert (result.status, result.total_rows, result.imported_rows) == ("COMPLETED", 0, 0)


def test_a_dry_run_predicts_the_failure(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "na.csv", KICKSTARTER_2015.render(**dict.fromkeys(MONEY, "n/a")))
    upload_id = stage_file(path, shop="dry.example.com", project="Dry")
    plan = start_upload(upload_id, dry_run=True)

    prediction = dry_run_upload(upload_id, plan.error)

    assert prediction.status == "FAILED"
    assert (prediction.errors or {})["error"]["code"] == "all_rows_rejected"
    assert read_upload(upload_id).status == "PENDING"


@pytest.mark.parametrize("value", [0, 0.5, 1])
def test_the_webhook_body_takes_a_fraction(value: float) -> None:
    body = UploadStored.model_validate_json(f'{{"upload_id": 7, "max_rejected_fraction": {value}}}')
    assert body.max_rejected_fraction == value


@pytest.mark.parametrize("value", ["1.5", "-0.1", '"0.5"', "true"])
def test_the_webhook_body_refuses_a_fraction_out_of_range(value: str) -> None:
    with pytest.raises(ValidationError):
        UploadStored.model_validate_json(f'{{"upload_id": 7, "max_rejected_fraction": {value}}}')
