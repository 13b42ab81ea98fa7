"""The burst sampler's memory and process figures: each worker's tree on its own, flow-run
processes counted by their command line, peaks kept per worker."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from pledgeflow_bench.bursts import _peak_each, _tree_rss

# A parent that holds ~`mb` MiB and starts children that sleep; a child given the argument
# ENGINE gets "prefect.engine" in its command line instead, so it looks like a flow-run process
# to the sampler (`python -m prefect.engine`); the parent's own command line does not.
PARENT = """
import subprocess, sys, time
ballast = b"x" * ({mb} * 2**20)  # written, so resident
kids = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)",
                          *(a.replace("ENGINE", "prefect" + ".engine") for a in args)])
        for args in {children!r}]
print("ready", flush=True)
time.sleep(60)
"""


@contextmanager
def tree(mb: int, children: list[list[str]]) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(mb=mb, children=children)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        while len(psutil.Process(proc.pid).children()) < len(children):
            assert time.monotonic() < deadline, "children did not start"
            time.sleep(0.05)
        yield proc
    finally:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()


def test_each_worker_tree_is_measured_on_its_own_and_flow_runs_are_counted() -> None:
    with (
        tree(200, [["ENGINE"], ["other"]]) as big,
        tree(10, [["ENGINE"]]) as small,
    ):
        each, runs = _tree_rss([big.pid, small.pid])
        big_tree = [psutil.Process(big.pid), *psutil.Process(big.pid).children(recursive=True)]
    assert runs == 2
    assert len(each) == 2
    # The big tree holds its 200 MiB ballast and three interpreters; the small one does not.
    assert each[0] > 200 * 2**20
    assert each[1] < 150 * 2**20
    assert each[0] - each[1] > 150 * 2**20
    assert len(big_tree) == 3


def test_a_worker_that_is_gone_counts_zero_and_keeps_its_place() -> None:
    with tree(1, []) as gone:
        pass
    with tree(1, []) as alive:
        each, runs = _tree_rss([gone.pid, alive.pid])
    assert each[0] == 0 < each[1]
    assert runs == 0


def test_peaks_are_kept_per_worker() -> None:
    assert _peak_each([], [5, 7]) == [5, 7]
    assert _peak_each([5, 7], [6, 2]) == [6, 7]
    assert _peak_each([9, 1], [3, 4]) == [9, 4]
