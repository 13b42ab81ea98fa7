"""A worker's flow-run processes when they fork from a warm parent (`pledgeflow.warm_start`).

The worker's own children are then the launchers; the processes that run the flows are the
children of the worker's warm parent, which is no child of the worker (it outlives the launcher
that started it). The benches find it by its command line, which names the worker's pid.
"""

from __future__ import annotations

import psutil

SERVE = ("pledgeflow.warm_start", "--serve")


def warm_parents(worker: int) -> list[psutil.Process]:
    """The warm parents serving `worker` (not their forked children, which share the command
    line)."""
    serving: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if all(part in cmdline for part in SERVE) and cmdline[-1:] == [str(worker)]:
            serving[proc.pid] = proc
    parents = []
    for proc in serving.values():
        try:
            if proc.ppid() not in serving:
                parents.append(proc)
        except psutil.NoSuchProcess:
            continue
    return parents


def forked_runs_cpu(worker: int) -> float:
    """CPU seconds of the ended flow-run processes the worker's warm parents have reaped."""
    total = 0.0
    for parent in warm_parents(worker):
        try:
            times = parent.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.children_user + times.children_system
    return total
