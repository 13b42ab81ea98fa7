"""Progress a person can watch: live counters as chunks commit, the bar, the plain lines."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from pathlib import Path

import pytest
from prefect.settings import PREFECT_API_URL
from rich.console import Console
from sqlalchemy.engine import Engine

from pledgeflow.chunks import process_chunk
from pledgeflow.progress import ImportProgress
from pledgeflow.staging import stage_file
from pledgeflow.uploads import read_upload, start_upload
from pledgeflow_bench.exports import backers, render
from tests.helpers import count, held_pledges, run_plain, write_file

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "pledgeflow"
BAR = "━"


def _staged(tmp_path: Path, rows: int, chunk_size: int, repeat_every: int = 0) -> int:
    path = write_file(
        tmp_path, "backers.csv", render("2020", backers(rows, repeat_every=repeat_every))
    )
    return stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=chunk_size)


def test_counters_are_set_at_staging_and_move_as_each_chunk_commits(
    db: Engine, tmp_path: Path
) -> None:
    upload_id = _staged(tmp_path, rows=10, chunk_size=4)
    staged = read_upload(upload_id)
    assert (staged.status, staged.total_rows, staged.total_chunks) == ("PENDING", 10, 3)
    assert (staged.completed_chunks, staged.imported_rows) == (0, 0)
    assert staged.stats is not None and staged.stats["staging_seconds"] >= 0

    plan = start_upload(upload_id)
    seen = []
    for chunk_id in plan.chunk_ids:
        process_chunk(chunk_id)
        upload = read_upload(upload_id)
        seen.append((upload.completed_chunks, upload.imported_rows))
    assert seen == [(1, 4), (2, 8), (3, 10)]

    # A chunk imported again (a reclaimed lease, a retry) is counted once.
    with db.begin() as conn:
        conn.exec_driver_sql(
            "UPDATE csv_upload_chunk SET status = 'PENDING' WHERE id = %s", (plan.chunk_ids[0],)
        )
    process_chunk(plan.chunk_ids[0])
    again = read_upload(upload_id)
    assert (again.completed_chunks, again.imported_rows, again.failed_chunks) == (3, 10, 0)


def test_concurrent_chunks_of_one_upload_count_without_deadlocking(
    db: Engine, tmp_path: Path, slow_pledges: None, write_path: str
) -> None:
    # Re-imported, both chunks' pledges point at the new upload (a KEY SHARE lock on its row),
    # and rows 4 and 5 share a backer that both chunks move forward last, one waiting for the
    # other's: the recount's lock on the upload must not wait for the other chunk's references.
    run_plain(_staged(tmp_path, rows=8, chunk_size=4, repeat_every=5))
    upload_id = _staged(tmp_path, rows=8, chunk_size=4, repeat_every=5)
    plan = start_upload(upload_id)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = list(pool.map(process_chunk, plan.chunk_ids))

    assert [o.status for o in outcomes] == ["COMPLETED", "COMPLETED"]
    upload = read_upload(upload_id)
    assert (upload.completed_chunks, upload.failed_chunks, upload.imported_rows) == (2, 0, 8)
    assert count(db, "SELECT max(attempts) FROM csv_upload_chunk WHERE upload_id = 2") == 1


def test_web_app_upload_shows_its_totals_once_started(db: Engine, tmp_path: Path) -> None:
    from tests.helpers import store_web_app_upload

    headers, *rows = csv.reader(io.StringIO(render("2020", backers(5)).decode()))
    upload_id = store_web_app_upload(db, headers, [rows[:3], rows[3:]])
    assert read_upload(upload_id).total_rows == 0

    start_upload(upload_id)

    started = read_upload(upload_id)
    assert (started.total_rows, started.total_chunks, started.completed_chunks) == (5, 2, 0)


def _frames(output: str) -> list[str]:
    """Each rendering of the bar's line, ANSI control sequences removed."""
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "\n", output)
    return [line for line in plain.replace("\r", "\n").split("\n") if "chunks" in line]


def test_the_live_bar_advances_as_chunks_commit(db: Engine, tmp_path: Path) -> None:
    upload_id = _staged(tmp_path, rows=9, chunk_size=3)
    out = StringIO()
    console = Console(file=out, force_terminal=True, color_system=None, width=140)
    plan = start_upload(upload_id)

    with ImportProgress(console, background=False) as progress:
        assert progress.live
        progress.watch(upload_id)
        progress.progress.refresh()
        for chunk_id in plan.chunk_ids:
            process_chunk(chunk_id)
            progress.refresh()
            progress.progress.refresh()

    frames = _frames(out.getvalue())
    assert frames, out.getvalue()
    bars = [frame.count(BAR) for frame in frames]
    assert bars == sorted(bars), frames
    assert bars[0] == 0 and bars[-1] > 0, frames
    assert len(set(bars)) == 4, frames  # empty, a third, two thirds, full
    shown = [re.search(r"(\d+)/3 chunks +(\S+)/9 rows", f) for f in frames]
    assert all(shown), frames
    steps = [(m.group(1), m.group(2)) for m in shown if m]
    assert [s for i, s in enumerate(steps) if i == 0 or s != steps[i - 1]] == [
        ("0", "0"),
        ("1", "3"),
        ("2", "6"),
        ("3", "9"),
    ]
    assert "rows/s" in frames[-1] and "ETA" in frames[-1]
    assert f"upload {upload_id} importing" in frames[-1]


def _plain_progress(out: StringIO, clock: list[float]) -> ImportProgress:
    """Progress without a terminal: a line into `out` every 5 s of `clock`."""
    console = Console(file=out, force_terminal=False, width=200)
    return ImportProgress(console, interval=5, get_time=lambda: clock[0], background=False)


def _started(tmp_path: Path, chunk_size: int) -> tuple[int, list[int]]:
    """A started upload of six rows: its id and its chunks' ids."""
    upload_id = _staged(tmp_path, rows=6, chunk_size=chunk_size)
    return upload_id, start_upload(upload_id).chunk_ids


def test_an_upload_done_within_one_interval_ends_with_its_rate(db: Engine, tmp_path: Path) -> None:
    upload_id, chunk_ids = _started(tmp_path, chunk_size=6)
    out, clock = StringIO(), [0.0]

    with _plain_progress(out, clock) as progress:
        progress.watch(upload_id)
        clock[0] += 2
        process_chunk(chunk_ids[0])

    lines = out.getvalue().splitlines()
    # Six rows in the two seconds since the watch began: not `- rows/s`.
    assert lines[-1] == f"upload {upload_id} importing: 1/1 chunks, 6/6 rows, 3 rows/s", lines


def test_without_a_terminal_a_line_every_interval(db: Engine, tmp_path: Path) -> None:
    upload_id, chunk_ids = _started(tmp_path, chunk_size=2)
    out, clock = StringIO(), [0.0]

    with _plain_progress(out, clock) as progress:
        assert not progress.live
        progress.watch(upload_id)
        for chunk_id in chunk_ids:
            process_chunk(chunk_id)
            progress.refresh()  # within the interval: no line
            clock[0] += 6
            progress.refresh()

    lines = out.getvalue().splitlines()
    assert lines[0] == f"upload {upload_id} importing: 0/3 chunks, 0/6 rows, - rows/s, ETA unknown"
    assert lines[1].startswith(f"upload {upload_id} importing: 1/3 chunks, 2/6 rows, ")
    assert re.fullmatch(r".*: 2/3 chunks, 4/6 rows, [\d,]+ rows/s, ETA \d+ s", lines[2]), lines
    assert re.fullmatch(r".*: 3/3 chunks, 6/6 rows, [\d,]+ rows/s", lines[3]), lines
    assert len(lines) == 4, lines  # the end is not printed twice
    assert "\x1b" not in out.getvalue()


def test_disabled_progress_prints_nothing(db: Engine, tmp_path: Path) -> None:
    out = StringIO()
    console = Console(file=out, force_terminal=True)
    with ImportProgress(console, enabled=False) as progress:
        progress.staged(10)
        progress.watch(_staged(tmp_path, rows=3, chunk_size=2))
    assert out.getvalue() == ""


@pytest.mark.slow
def test_status_polled_during_a_multi_chunk_import_shows_live_counters(
    db: Engine, prefect_harness: None, tmp_path: Path
) -> None:
    assert CLI.is_file(), f"console script missing: {CLI}"
    path = write_file(tmp_path, "backers.csv", render("2020", backers(800)))
    env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value())}
    args = ["import", str(path), "--shop", "shop.example.com", "--project", "Live"]
    # The last four chunks' pledges wait until a status has been seen mid-import, so that the
    # status command, however slow to start on a busy machine, looks while chunks remain.
    seen: list[tuple[str, int, int]] = []
    with held_pledges(db, after_row=400) as release:
        importing = subprocess.Popen(
            [str(CLI), *args, "--chunk-size", "100", "--json"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 240
        try:
            while importing.poll() is None and time.monotonic() < deadline:
                if count(db, "SELECT count(*) FROM csv_upload") == 0:
                    time.sleep(0.2)
                    continue
                upload_id = count(db, "SELECT max(id) FROM csv_upload")
                status = subprocess.run(
                    [str(CLI), "status", str(upload_id), "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=60,
                    check=True,
                )
                data = json.loads(status.stdout)
                seen.append((data["status"], data["completed_chunks"], data["total_chunks"]))
                if 0 < data["completed_chunks"] < data["total_chunks"]:
                    release()
            release()
            stdout, stderr = importing.communicate(timeout=240)
        finally:
            if importing.poll() is None:
                importing.kill()
    assert importing.returncode == 0, stderr
    final = json.loads(stdout)
    assert (final["status"], final["completed_chunks"], final["total_chunks"]) == (
        "COMPLETED",
        8,
        8,
    )
    assert seen and all(total == 8 for _, _, total in seen), seen
    assert any(0 < done < total for _, done, total in seen), seen
    done = [d for _, d, _ in seen]
    assert done == sorted(done), seen


def test_the_progress_artifact_shows_the_uploads_counters(
    db: Engine, prefect_harness: None, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from flows.process_upload import process_upload

    upload_id = _staged(tmp_path, rows=300, chunk_size=100)
    state = process_upload(upload_id, return_state=True)
    assert state.is_completed(), state.message

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[f"upload-{upload_id}-progress"])
            )
        )
    # Upload ids restart with each test's database; the run tells this upload's artifact apart.
    mine = [a for a in found if a.flow_run_id == state.state_details.flow_run_id]
    assert len(mine) == 1, found
    assert mine[0].data == 100.0
    assert mine[0].description == "3 of 3 chunks completed, 300 of 300 rows"
