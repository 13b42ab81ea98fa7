"""Flow-run processes forked from a warm parent (pledgeflow/warm_start.py) behave, for the
worker that starts them, like `python -m prefect.engine`: its streams, working directory,
environment and exit code, signals that reach the run, a run killed with its launcher, and a
parent that ends with its worker. A probe module stands in for the engine (the deployments'
end-to-end tests run the real one), and a small process stands in for the worker."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from pledgeflow_bench.warm import warm_parents

ROOT = Path(__file__).resolve().parent.parent
PROBE = "tests.warm_probe"
# A worker stand-in: starts launchers as the process worker does (no shell, pipes for their
# output), signals them and waits for them, on JSON commands read from its stdin.
STAND_IN = r"""
import json, os, subprocess, sys
procs = {}
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["do"] == "start":
        p = subprocess.Popen([sys.executable, "-m", "pledgeflow.warm_start", cmd["module"]],
                             env=cmd["env"], cwd=cmd["cwd"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        procs[p.pid] = p
        answer = {"pid": p.pid}
    elif cmd["do"] == "readline":
        answer = {"line": procs[cmd["pid"]].stdout.readline()}
    elif cmd["do"] == "signal":
        os.kill(cmd["pid"], cmd["signal"])
        answer = {}
    else:
        p = procs.pop(cmd["pid"])
        out, err = p.communicate(timeout=300)
        answer = {"rc": p.returncode, "out": out, "err": err}
    print(json.dumps(answer), flush=True)
"""


class Worker:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc = subprocess.Popen(
            [sys.executable, "-c", STAND_IN],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ask(self, **cmd: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return answer

    def start(self, cwd: Path, **per_run: str) -> int:
        env = {**self.env, **{f"PREFECT__PROBE_{k.upper()}": v for k, v in per_run.items()}}
        return int(self.ask(do="start", module=PROBE, env=env, cwd=str(cwd))["pid"])

    def report(self, launcher: int) -> dict[str, Any]:
        """The first line the run printed: what it was given."""
        line = self.ask(do="readline", pid=launcher)["line"]
        report: dict[str, Any] = json.loads(line)
        return report

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


@pytest.fixture
def tmp_path() -> Iterator[Path]:
    """A short temporary folder: the warm parent's socket is made under TMPDIR, and a Unix
    socket's path may not pass 107 bytes, which pytest-xdist's `tmp_path` can (the launcher then
    falls back to running the engine itself)."""
    path = Path(tempfile.mkdtemp(prefix="pfw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def base_env(tmp: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),  # the probe module lives in the tests
        "TMPDIR": str(tmp),  # the launchers' sockets and the parent's log, for this test only
        "PLEDGEFLOW_PROBE_MARK": "worker-env",
        "DO_NOT_TRACK": "1",
    }


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_runs_fork_from_one_warm_parent_and_look_like_the_engine_to_the_worker(
    tmp_path: Path,
) -> None:
    worker = Worker(base_env(tmp_path))
    runs = tmp_path / "runs"
    runs.mkdir()
    try:
        first = worker.start(runs, run="1", exit="0")
        report_first = worker.report(first)
        done_first = worker.ask(do="wait", pid=first)
        second = worker.start(tmp_path, run="2", exit="3")
        report_second = worker.report(second)
        done_second = worker.ask(do="wait", pid=second)

        # One warm parent, which imported the flows before forking: the runs are its children
        # (not the launchers the worker started), with the launcher's directory and environment.
        parents = warm_parents(worker.proc.pid)
        assert [p.pid for p in parents] == [report_first["ppid"]] == [report_second["ppid"]]
        assert report_first["pid"] != first and report_second["pid"] != second
        assert report_first["preloaded"] and report_second["preloaded"]
        assert (report_first["cwd"], report_second["cwd"]) == (str(runs), str(tmp_path))
        assert (report_first["run"], report_second["run"]) == ("1", "2")
        assert report_first["mark"] == report_second["mark"] == "worker-env"
        # Their output reaches the worker through the launcher's pipes; the exit code is theirs.
        assert (done_first["rc"], done_second["rc"]) == (0, 3)
        assert done_first["err"] == "probe 1 on stderr\n"
        assert done_second["err"] == "probe 2 on stderr\n"

        # A cancellation's SIGTERM to the launcher reaches the run, which dies of it: so does
        # the launcher, as `python -m prefect.engine` would.
        stopped = worker.start(runs, run="3", sleep="1")
        report_stopped = worker.report(stopped)
        worker.ask(do="signal", pid=stopped, signal=int(signal.SIGTERM))
        assert worker.ask(do="wait", pid=stopped)["rc"] == -signal.SIGTERM
        assert not psutil.pid_exists(report_stopped["pid"])

        # A run killed (out of memory, by hand): its launcher dies of the same signal.
        crashed = worker.start(runs, run="4", sleep="1")
        os.kill(worker.report(crashed)["pid"], signal.SIGKILL)
        assert worker.ask(do="wait", pid=crashed)["rc"] == -signal.SIGKILL

        # A launcher SIGKILLed (the worker's last resort) takes its run with it.
        killed = worker.start(runs, run="5", sleep="1")
        report_killed = worker.report(killed)
        worker.ask(do="signal", pid=killed, signal=int(signal.SIGKILL))
        assert worker.ask(do="wait", pid=killed)["rc"] == -signal.SIGKILL
        wait_until(lambda: not psutil.pid_exists(report_killed["pid"]), 10, "the run's end")
    finally:
        worker.close()
    # The parent ends with its worker, and leaves no socket, lock or log behind.
    parent = psutil.Process(report_first["ppid"])
    wait_until(lambda: not parent.is_running(), 15, "the warm parent's exit")
    assert list((tmp_path / f"pledgeflow-warm-{os.getuid()}").iterdir()) == []


def test_without_a_warm_parent_the_launcher_runs_the_engine_itself(tmp_path: Path) -> None:
    # The launchers' directory is readable by the group: no socket is made there, yet the run
    # runs.
    shared = tmp_path / f"pledgeflow-warm-{os.getuid()}"
    shared.mkdir()
    shared.chmod(0o740)
    worker = Worker(base_env(tmp_path))
    try:
        launcher = worker.start(tmp_path, run="6", exit="4")
        report = worker.report(launcher)
        done = worker.ask(do="wait", pid=launcher)
    finally:
        worker.close()
    assert report["pid"] == launcher  # the launcher became the run
    assert not report["preloaded"]
    assert done["rc"] == 4
    assert "no warm parent" in done["err"] and "probe 6 on stderr" in done["err"]
