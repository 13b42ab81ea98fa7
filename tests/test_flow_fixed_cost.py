"""A small upload's fixed cost: what its flow run would load mid-run is loaded with the flows,
and the run's end does not wait for its heartbeat thread, which still beats."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect import flow_engine
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from sqlalchemy.engine import Engine

import flows.process_upload  # noqa: F401 - what it does on import is under test
from pledgeflow.run_imports import RUN_MODULES
from pledgeflow.staging import stage_file
from pledgeflow_bench.exports import backers, render
from tests.helpers import write_file

ROOT = Path(__file__).resolve().parents[1]


def test_importing_the_flows_loads_what_a_run_would_load_mid_run() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import flows.process_upload\n"
        "from pandera.backends.pandas.register import register_pandas_backends as r\n"
        f"missing = [m for m in {RUN_MODULES!r} if m not in sys.modules]\n"
        "print(missing, r.cache_info().currsize)\n"
    )
    # A fresh interpreter: this one has imported whatever other tests needed.
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["[]", "1"], out


class _Engine:
    """What Prefect's heartbeat context reads of a flow run engine: its interval, the event's
    template, a way to emit one, the run and a logger."""

    def __init__(self) -> None:
        self.beats = 0
        self.flow_run = None
        self.logger = _Logger()

    @property
    def heartbeat_seconds(self) -> int:
        return 30

    def _build_heartbeat_event_template(self) -> tuple[dict[str, str], list[Any]]:
        return {}, []

    def _emit_flow_run_heartbeat(self, resource: Any, related: Any) -> None:
        self.beats += 1


class _Logger:
    def debug(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_a_runs_end_does_not_wait_for_its_heartbeat_thread_which_stops_by_itself() -> None:
    engine = _Engine()
    before = set(threading.enumerate())
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        context = flow_engine._send_heartbeats(engine)  # type: ignore[arg-type]  # a stand-in
        context.__enter__()
        time.sleep(0.2)  # the thread has beaten once and sleeps in 1 s steps
        context.__exit__(None, None, None)
        # Not joined: the thread is still in its 1 s step when the run's context is left
        # (joined, as by Prefect's own context, the exit waits for it to end: 0.8 s here).
        beating = [t for t in threading.enumerate() if t not in before]
        assert beating and all(t.is_alive() for t in beating)
    assert engine.beats == 1
    for thread in beating:
        thread.join(timeout=5)
    assert not any(t.is_alive() for t in beating)
    assert engine.beats == 1  # stopped without beating again


def test_an_upload_run_reads_no_task_run_back_and_updates_progress_once_per_chunk(
    db: Engine, prefect_harness: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.process_upload import process_upload

    path = write_file(tmp_path, "backers.csv", render("2020", backers(30)))
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=10)
    requests: list[tuple[str, str]] = []
    send = httpx.AsyncClient.send

    async def recording(self: httpx.AsyncClient, request: httpx.Request, **kw: Any) -> Any:
        requests.append((request.method, request.url.path))
        return await send(self, request, **kw)

    send_sync = httpx.Client.send

    def recording_sync(self: httpx.Client, request: httpx.Request, **kw: Any) -> Any:
        requests.append((request.method, request.url.path))
        return send_sync(self, request, **kw)

    # Observed, not replaced: every request still reaches the test harness's server.
    monkeypatch.setattr(httpx.AsyncClient, "send", recording)
    monkeypatch.setattr(httpx.Client, "send", recording_sync)
    state = process_upload(upload_id, return_state=True)
    assert state.is_completed(), state.message
    # Each chunk task's final state is taken from its future, not read back from the API
    # (which may not have recorded the task run yet).
    assert not [r for r in requests if r[0] == "GET" and "/task_runs/" in r[1]], requests
    # The progress artifact is created with the counters, then moves once per chunk.
    artifacts = [r for r in requests if r[1].rstrip("/").endswith("/artifacts")]
    updates = [r for r in requests if r[0] == "PATCH" and "/artifacts/" in r[1]]
    assert (len(artifacts), len(updates)) == (2, 3), requests  # progress and summary
