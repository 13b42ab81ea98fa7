"""A small upload's fixed cost: what its flow run would load mid-run is loaded with the flows,
and the run's end does not wait for its heartbeat thread, which still beats."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from prefect import flow_engine
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

import flows.process_upload  # noqa: F401 - what it does on import is under test
from pledgeflow.run_imports import RUN_MODULES

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
        started = time.perf_counter()
        context.__exit__(None, None, None)
        waited = time.perf_counter() - started
    # Joined, the exit took the rest of the thread's 1 s step (0.8 s here).
    assert waited < 0.4, waited
    assert engine.beats == 1
    beating = [t for t in threading.enumerate() if t not in before]
    for thread in beating:
        thread.join(timeout=5)
    assert not any(t.is_alive() for t in beating)
    assert engine.beats == 1  # stopped without beating again
