"""Chunk tasks on a local Dask cluster of two worker processes give the same tables as threads."""

from __future__ import annotations

import os
from pathlib import Path

from prefect_dask.task_runners import DaskTaskRunner
from sqlalchemy import text
from sqlalchemy.engine import Engine

from flows.process_upload import process_upload
from pledgeflow.staging import stage_file
from pledgeflow.uploads import read_upload
from pledgeflow_bench.exports import backers, render
from tests.conftest import DATA_TABLES
from tests.helpers import checksums, import_path, slow_on_harness, write_file

# A Dask cluster of two processes and the Prefect harness: minutes on a busy machine.
pytestmark = slow_on_harness(timeout=900)


def test_dask_cluster_of_two_processes_matches_the_thread_runner(
    db: Engine, tmp_path: Path
) -> None:
    path = write_file(tmp_path, "dask.csv", render("2020", backers(80, repeat_every=6)))
    assert import_path(path, chunk_size=10).status == "COMPLETED"
    threads = checksums(db)
    with db.begin() as conn:
        conn.execute(text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=10)
    runner = DaskTaskRunner(
        cluster_kwargs={
            "n_workers": 2,
            "processes": True,
            "threads_per_worker": 2,
            "dashboard_address": None,
        },
    )

    state = process_upload.with_options(task_runner=runner)(  # type: ignore[arg-type]
        upload_id, return_state=True
    )

    assert state.is_completed(), state.message
    result = read_upload(upload_id)
    assert (result.status, result.imported_rows, result.completed_chunks) == ("COMPLETED", 80, 8)
    assert checksums(db) == threads
    with db.connect() as conn:
        writers = conn.execute(
            text(
                "SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE application_name = "
                "'pledgeflow' AND pid <> pg_backend_pid()"
            )
        ).scalar_one()
    assert os.getpid() and writers >= 1
