"""Chunks of one upload run concurrently; a failing chunk leaves nothing of its own behind."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow_bench.exports import backers, render
from tests.helpers import checksums, count, import_path, pledge_trigger, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness", "write_path")


def max_overlap(intervals: list[tuple[datetime, datetime]]) -> int:
    events = sorted(
        [(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1])
    )
    best = running = 0
    for _, step in events:
        running += step
        best = max(best, running)
    return best


def chunk_spans(engine: Engine) -> list[tuple[datetime, datetime]]:
    """When each chunk started and completed."""
    with engine.connect() as conn:
        spans = conn.execute(text("SELECT started_at, completed_at FROM csv_upload_chunk"))
        return [(started, completed) for started, completed in spans]


def test_chunks_run_concurrently_and_match_a_serial_run(
    db: Engine, tmp_path: Path, slow_pledges: None
) -> None:
    path = write_file(tmp_path, "many.csv", render("2020", backers(120, repeat_every=7)))
    from flows.process_upload import process_upload
    from pledgeflow.staging import stage_file
    from pledgeflow.uploads import read_upload

    # Four chunk tasks at once, whatever PLEDGEFLOW_TASK_CONCURRENCY says (default 2).
    wide = process_upload.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=4)  # type: ignore[arg-type]
    )
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=6)
    wide(upload_id, return_state=True)
    result = read_upload(upload_id)

    assert result.status == "COMPLETED"
    assert result.total_chunks == 20
    spans = chunk_spans(db)
    assert max_overlap(spans) >= 4
    concurrent = checksums(db)

    with db.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE inventory, survey, pledge, product, backer, "
                "csv_upload_chunk, csv_upload, project RESTART IDENTITY CASCADE"
            )
        )
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=6)
    serial = process_upload.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=1)  # type: ignore[arg-type]
    )
    serial(upload_id, return_state=True)
    spans = chunk_spans(db)
    assert max_overlap(spans) == 1
    assert checksums(db) == concurrent


@pytest.fixture
def failing_pledge(db: Engine) -> Iterator[str]:
    """A database trigger that fails any transaction writing pledge key 'boom'."""
    fail = "IF NEW.pledge_id = 'boom' THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN NEW;"
    with pledge_trigger(db, "test_boom", fail):
        yield "boom"


def test_a_failing_chunk_leaves_no_rows_and_fails_the_upload(
    db: Engine, tmp_path: Path, failing_pledge: str
) -> None:
    rows = backers(12)
    rows[7].extra["Backer Number"] = failing_pledge  # data row 8, in chunk 1 of 0..2
    rows[7].email = "only-in-failing-chunk@example.com"
    rows[7].tier = None
    path = write_file(tmp_path, "fail.csv", render("2020", rows))

    result = import_path(path, chunk_size=4)

    assert result.status == "FAILED"
    assert (result.total_chunks, result.completed_chunks, result.failed_chunks) == (3, 2, 1)
    assert result.total_rows == 12
    assert result.imported_rows == 8
    error = (result.errors or {})["error"]
    assert error["code"] == "chunks_failed"
    assert error["chunks"][0]["chunk_index"] == 1
    assert "injected failure" in error["chunks"][0]["message"]
    with db.connect() as conn:
        chunk = conn.execute(
            text("SELECT status, errors FROM csv_upload_chunk WHERE chunk_index = 1")
        ).one()
    assert chunk.status == "FAILED"
    assert chunk.errors["error"]["code"] == "database_error"
    assert chunk.errors["error"]["message"] == "injected failure (SQLSTATE P0001)"
    # Nothing of chunk 1 is left: its backers, pledges and surveys were rolled back.
    assert count(db, "SELECT count(*) FROM pledge") == 8
    assert count(db, "SELECT count(*) FROM pledge WHERE source_row BETWEEN 5 AND 8") == 0
    assert count(db, "SELECT count(*) FROM backer WHERE email LIKE 'only-in-failing%'") == 0
    assert count(db, "SELECT count(*) FROM survey") == 8
