"""Faults that happen in production lose nothing: killed workers, lost connections, lost Redis,
concurrent imports. Each test compares the final tables with a clean run of the same file."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import text
from sqlalchemy.engine import Engine

from flows.process_upload import process_upload
from pledgeflow.staging import stage_file
from pledgeflow.uploads import read_upload
from pledgeflow_bench.exports import backers, render
from tests.conftest import DATA_TABLES
from tests.helpers import checksums, configure, count, import_path, slow_on_harness, write_file
from tests.services import BIN, free_port, wait_until

# A cap, not a delay: a killed worker's retry waits on subprocesses and the harness's recorders,
# which took over 300 s on a machine at load 20.
pytestmark = slow_on_harness(timeout=900)


def truncate(db: Engine) -> None:
    with db.begin() as conn:
        conn.execute(text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))


def clean_run(db: Engine, path: Path, chunk_size: int) -> dict[str, tuple[int, str]]:
    """Checksums of the tables after an undisturbed import of `path` into empty tables."""
    truncate(db)
    assert import_path(path, chunk_size=chunk_size).status == "COMPLETED"
    sums = checksums(db)
    truncate(db)
    return sums


def chunk_statuses(db: Engine, upload_id: int) -> list[str]:
    with db.connect() as conn:
        return [
            r.status
            for r in conn.execute(
                text(
                    "SELECT status FROM csv_upload_chunk WHERE upload_id = :u ORDER BY chunk_index"
                ),
                {"u": upload_id},
            )
        ]


def in_background(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_worker_killed_mid_upload_then_retried_equals_a_clean_run(
    db: Engine, tmp_path: Path, slow_pledges: None, pg_url: str
) -> None:
    # 100-row chunks: the smallest the CLI accepts.
    path = write_file(tmp_path, "killed.csv", render("2020", backers(800, repeat_every=9)))
    expected = clean_run(db, path, chunk_size=100)
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "PLEDGEFLOW_DATABASE_URL": pg_url,
        "PLEDGEFLOW_CHUNK_LEASE_SECONDS": "4",
    }
    proc = subprocess.Popen(
        [
            str(BIN / "pledgeflow"),
            "import",
            str(path),
            "--shop",
            "shop.example.com",
            "--project",
            "Campaign",
            "--chunk-size",
            "100",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_until(
            lambda: (
                count(db, "SELECT count(*) FROM csv_upload_chunk WHERE status = 'COMPLETED'") >= 2
                and count(db, "SELECT count(*) FROM csv_upload_chunk WHERE status = 'PROCESSING'")
                >= 1
            ),
            120,
            "chunks in flight",
            interval=0.1,
        )
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    upload_id = 1
    statuses = chunk_statuses(db, upload_id)
    assert "PROCESSING" in statuses and "PENDING" in statuses, statuses
    time.sleep(5)  # the dead worker's chunk leases (and Redis locks) run out

    retried = subprocess.run(
        [str(BIN / "pledgeflow"), "retry", str(upload_id), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert set(chunk_statuses(db, upload_id)) == {"COMPLETED"}
    assert checksums(db) == expected
    assert read_upload(upload_id).imported_rows == 800


def test_connections_terminated_mid_chunk_are_retried_to_a_clean_result(
    db: Engine, tmp_path: Path, slow_pledges: None
) -> None:
    path = write_file(tmp_path, "terminated.csv", render("2017", backers(70, repeat_every=7)))
    expected = clean_run(db, path, chunk_size=10)
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=10)
    killed: list[int] = []
    done = threading.Event()

    def terminate_writers() -> None:
        while not done.is_set() and len(killed) < 3:
            with db.connect() as conn:
                pids = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid), pid FROM pg_stat_activity "
                        "WHERE application_name = 'pledgeflow' AND state = 'active' "
                        # Only this test run's database: other runs (xdist workers) share the
                        # server.
                        "AND datname = current_database() "
                        # On PostgreSQL the pledge write is `WITH w AS (INSERT INTO pledge …)`.
                        "AND query LIKE '%INSERT INTO pledge%' AND pid <> pg_backend_pid()"
                    )
                ).all()
                conn.commit()
            killed.extend(pid for ok, pid in pids if ok)
            time.sleep(0.3)

    killer = in_background(terminate_writers)
    state = process_upload(upload_id, return_state=True)
    done.set()
    killer.join()

    assert len(killed) >= 1
    assert state.is_completed(), state.message
    assert read_upload(upload_id).status == "COMPLETED"
    assert checksums(db) == expected


def test_redis_lost_mid_run_loses_nothing_and_a_retry_completes(
    db: Engine, tmp_path: Path, slow_pledges: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_file(tmp_path, "redis.csv", render("2020", backers(60)))
    expected = clean_run(db, path, chunk_size=10)
    port = free_port()
    redis_server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    configure(monkeypatch, redis_url=f"redis://127.0.0.1:{port}/0")
    try:
        wait_until(
            lambda: (
                subprocess.run(
                    ["redis-cli", "-p", str(port), "ping"], capture_output=True
                ).returncode
                == 0
            ),
            20,
            "redis",
        )
        upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=10)

        def kill_redis_when_busy() -> None:
            wait_until(
                lambda: (
                    count(db, "SELECT count(*) FROM csv_upload_chunk WHERE status = 'COMPLETED'")
                    >= 2
                ),
                60,
                "two chunks",
                interval=0.1,
            )
            redis_server.kill()

        killer = in_background(kill_redis_when_busy)
        first = process_upload(upload_id, return_state=True)
        killer.join()
        redis_server.wait(timeout=10)

        after_first = read_upload(upload_id)
        if first.is_failed():
            assert after_first.status == "FAILED"
            assert after_first.errors and after_first.errors["error"]["code"] == "chunks_failed"
        # Either way nothing is duplicated, and a retry (Redis still down) completes it.
        assert count(db, "SELECT count(*) FROM pledge") <= 60
        second = process_upload(upload_id, return_state=True)
        assert second.is_completed(), second.message
        assert read_upload(upload_id).status == "COMPLETED"
        assert checksums(db) == expected
    finally:
        if redis_server.poll() is None:
            redis_server.kill()


def test_concurrent_overlapping_imports_end_with_the_union(db: Engine, tmp_path: Path) -> None:
    everyone = backers(90, repeat_every=6)
    first_file = write_file(tmp_path, "a.csv", render("2020", everyone[:60]))
    second_file = write_file(tmp_path, "b.csv", render("2020", everyone[30:]))
    union = write_file(tmp_path, "union.csv", render("2020", everyone))
    expected = clean_run(db, union, chunk_size=5)

    ids = [
        stage_file(f, shop="shop.example.com", project="Campaign", chunk_size=5)
        for f in (first_file, second_file)
    ]
    states: dict[int, Any] = {}

    def run(upload_id: int) -> Callable[[], None]:
        return lambda: states.__setitem__(upload_id, process_upload(upload_id, return_state=True))

    threads = [in_background(run(u)) for u in ids]
    for thread in threads:
        thread.join(timeout=300)

    assert all(states[u].is_completed() for u in ids), [states[u].message for u in ids]
    for upload_id in ids:
        result = read_upload(upload_id)
        assert (result.status, result.imported_rows, result.rejected_rows) == ("COMPLETED", 60, 0)
    assert checksums(db) == expected
