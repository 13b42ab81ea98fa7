"""Retries, the sweep and result storage, through Prefect's test harness."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import pytest
import redis
from prefect import State, flow
from sqlalchemy import text
from sqlalchemy.engine import Engine

from flows.process_upload import process_upload
from flows.retry_upload import retry_upload
from flows.sweep_stuck_chunks import sweep_stuck_chunks
from pledgeflow.results import result_config
from pledgeflow.settings import get_settings
from pledgeflow.staging import stage_file
from pledgeflow.status import claim_chunk
from pledgeflow.uploads import chunk_name, find_upload_key, read_upload, start_upload
from pledgeflow_bench.exports import backers, render
from tasks.chunks import chunk_task_with
from tests.helpers import configure, count, stage_export, write_file
from tests.services import free_port, wait_until

pytestmark = pytest.mark.usefixtures("prefect_harness")


def chunk_states(records: list[logging.LogRecord]) -> dict[str, list[str]]:
    """The final state of each chunk task run, from the run loggers' records."""
    states: dict[str, list[str]] = {}
    for record in records:
        name = getattr(record, "task_run_name", "")
        message = record.getMessage()
        if name.startswith("chunk-") and message.startswith("Finished in state "):
            states.setdefault(name, []).append(message.removeprefix("Finished in state ")[:6])
    return states


def test_retry_reruns_failed_chunks_and_takes_completed_ones_from_redis(
    db: Engine,
    tmp_path: Path,
    flaky_pledge: str,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    rows = backers(24)
    rows[10].extra["Backer Number"] = flaky_pledge  # data row 11: chunk index 1 of 0..2
    upload_id = stage_export(
        tmp_path, "flaky.csv", rows, shop="ops.example.com", project="Ops", chunk_size=8
    )
    first = process_upload(upload_id, return_state=True)
    assert first.is_failed()
    assert read_upload(upload_id).failed_chunks == 1
    prefix = get_settings().redis_key_prefix
    key = find_upload_key(upload_id)
    cached = sorted(k.decode() for k in redis_client.scan_iter(match=f"{prefix}-{key}-chunk-*"))
    assert len(cached) == 2
    assert all(0 < redis_client.ttl(k) <= get_settings().result_ttl_seconds for k in cached)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="prefect.task_runs"):
        second = retry_upload(upload_id, return_state=True)

    assert second.is_completed()
    result = read_upload(upload_id)
    assert (result.status, result.imported_rows, result.failed_chunks) == ("COMPLETED", 24, 0)
    with db.connect() as conn:
        chunks = {
            chunk_name(r.chunk_index, r.first_row, r.row_count): (r.chunk_index, r.attempts)
            for r in conn.execute(
                text(
                    "SELECT chunk_index, first_row, row_count, attempts FROM csv_upload_chunk "
                    "WHERE upload_id = :u"
                ),
                {"u": upload_id},
            )
        }
    # Only the failed chunk ran again; the completed ones were neither claimed nor run.
    failed_chunk = next(name for name, (index, _) in chunks.items() if index == 1)
    assert chunk_states(caplog.records) == {failed_chunk: ["Comple"]}
    assert sorted(attempts for _, attempts in chunks.values()) == [1, 1, 2]

    # A run that does ask for a completed chunk gets its result from Redis, not the database.
    @flow
    def ask_again(chunk_id: int, key: str) -> State:
        task = chunk_task_with(result_config())
        return cast(State, task(chunk_id, key, return_state=True))

    caplog.clear()
    done_chunk = count(
        db, "SELECT id FROM csv_upload_chunk WHERE upload_id = :u AND chunk_index = 0", u=upload_id
    )
    with caplog.at_level(logging.INFO, logger="prefect.task_runs"):
        state = ask_again(done_chunk, find_upload_key(upload_id) or "")
    assert state.name == "Cached"
    assert state.result().chunk_index == 0
    # Called without a chunk name, the task run is named by the chunk's database id.
    assert chunk_states(caplog.records) == {f"chunk-id-{done_chunk}": ["Cached"]}


def test_sweep_finishes_chunks_left_processing_past_their_lease(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upload_id = stage_export(
        tmp_path,
        "stuck.csv",
        backers(12),
        shop="ops.example.com",
        project="Stuck",
        chunk_size=5,
        year="2017",
    )
    plan = start_upload(upload_id)
    # A worker claimed two chunks and died: one long ago, one just now.
    assert claim_chunk(plan.chunk_ids[0]) == 0
    assert claim_chunk(plan.chunk_ids[1]) == 1
    lease = get_settings().chunk_lease_seconds
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE csv_upload_chunk SET started_at = now() - make_interval(secs => :s) "
                "WHERE id = :c"
            ),
            {"s": lease + 5, "c": plan.chunk_ids[0]},
        )

    swept = sweep_stuck_chunks()

    assert swept == [upload_id]
    with db.connect() as conn:
        statuses = [
            r.status
            for r in conn.execute(
                text(
                    "SELECT status FROM csv_upload_chunk WHERE upload_id = :u ORDER BY chunk_index"
                ),
                {"u": upload_id},
            )
        ]
    # The expired chunk was reclaimed; the one still within its lease was left to its owner.
    assert statuses == ["COMPLETED", "PROCESSING", "COMPLETED"]
    assert read_upload(upload_id).status == "PROCESSING"
    assert sweep_stuck_chunks() == []

    configure(monkeypatch, chunk_lease_seconds="1")
    wait_until(lambda: sweep_stuck_chunks() == [upload_id], 30, "the second chunk's lease")
    result = read_upload(upload_id)
    assert (result.status, result.imported_rows) == ("COMPLETED", 12)
    assert count(db, "SELECT count(*) FROM pledge") == 12


def test_import_completes_with_one_warning_when_redis_is_unreachable(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    configure(monkeypatch, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    path = write_file(tmp_path, "no-redis.csv", render("2020", backers(20)))
    upload_id = stage_file(path, shop="ops.example.com", project="NoRedis", chunk_size=5)

    with caplog.at_level(logging.WARNING):
        state = process_upload(upload_id, return_state=True)

    assert state.is_completed()
    assert read_upload(upload_id).imported_rows == 20
    # pledgeflow's own warnings (a Prefect client may warn of a slow harness on a busy machine).
    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith(("pledgeflow", "tasks", "flows"))
    ]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert "unreachable" in warnings[0].getMessage()
