"""`pledgeflow bench --webhook-latency N`: how long a small upload waits and runs on a deployment.

On a fresh database and a temporary Prefect server on the given PostgreSQL server, set up as in
production (the burst bench's stack: prefect.yaml deployed, `pledgeflow limits apply`, one
process worker, the webhook, basic auth and CSRF protection on), one warm-up upload and then N
web-app uploads of `rows` rows, posted one at a time: for each, the seconds from the webhook's
202 to its flow run's COMPLETED state, and where they went (the worker picking the run up, the
flow-run process starting, the upload's own work, the run's report and end).
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import Engine, text

from pledgeflow_bench.burst import bench_services
from pledgeflow_bench.bursts import BurstStack, burst_stack, store_web_app_upload, write_exports
from pledgeflow_bench.warm import forked_runs_cpu, warm_parents
from pledgeflow_bench.workers import _wait_for

# The worker settings the README's production setup gives `prefect worker start`: ask for
# scheduled runs every second instead of Prefect's 10 s (a run then waits 0.5 s for a worker on
# average, not 5 s); the query is one indexed read of the work queue on the server.
WORKER_SETTINGS = {"PREFECT_WORKER_QUERY_SECONDS": "1"}


def _stamp(value: Any) -> float:
    """Unix seconds of a timestamp the Prefect API or the database gave."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.timestamp()


def _run_states(stack: BurstStack, run_id: str) -> dict[str, float]:
    """When the flow run first entered each state type, by the server's clock (this machine's)."""
    with stack.api_client() as client:
        answer = client.get("/flow_run_states/", params={"flow_run_id": run_id})
    answer.raise_for_status()
    entered: dict[str, float] = {}
    for state in answer.json():
        entered.setdefault(str(state["type"]), _stamp(state["timestamp"]))
    return entered


def _upload_times(engine: Engine, upload_id: int) -> tuple[str, float | None, float | None]:
    with engine.connect() as conn:
        row = conn.execute(
            text("SELECT status, started_at, completed_at FROM csv_upload WHERE id = :u"),
            {"u": upload_id},
        ).one()
    started = _stamp(row.started_at) if row.started_at else None
    completed = _stamp(row.completed_at) if row.completed_at else None
    return str(row.status), started, completed


def _children_cpu(pid: int) -> float:
    """CPU seconds of a worker's ended flow-run processes: the ended processes it has waited
    for (the launchers, or `python -m prefect.engine`), and those its warm parent forked."""
    times = psutil.Process(pid).cpu_times()
    return float(times.children_user + times.children_system) + forked_runs_cpu(pid)


def _own_cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for proc in procs:
        times = proc.cpu_times()
        total += times.user + times.system
    return total


def _one_upload(
    stack: BurstStack, engine: Engine, upload_id: int, timeout: float
) -> dict[str, Any]:
    """Deliver one upload's webhook and time its run to the end."""
    worker = stack.workers[0].pid
    cpu_before = _children_cpu(worker)
    run_id = stack.deliver([upload_id], at_once=1)[upload_id]
    accepted = time.time()  # the 202 has just arrived
    deadline = time.monotonic() + timeout
    while True:
        state = stack.run_states([run_id])[run_id]
        if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"upload {upload_id}: run still {state} after {timeout:.0f} s")
        time.sleep(0.2)
    # The worker reaps its flow-run process a moment after the run's final state.
    _wait_for(lambda: _children_cpu(worker) > cpu_before, 60, "the flow-run process's end")
    entered = _run_states(stack, run_id)
    status, started, completed = _upload_times(engine, upload_id)
    end = entered.get(state, time.time())

    def span(a: float | None, b: float | None) -> float | None:
        return round(b - a, 2) if a is not None and b is not None else None

    return {
        "upload_id": upload_id,
        "run_state": state,
        "upload_status": status,
        "seconds": span(accepted, end),
        # 202 → the worker took the run (Pending) → its process runs the flow (Running) →
        # the upload started → completed (chunks and aggregation) → the run COMPLETED.
        "to_picked_up": span(accepted, entered.get("PENDING")),
        "to_running": span(entered.get("PENDING"), entered.get("RUNNING")),
        "to_upload_started": span(entered.get("RUNNING"), started),
        "upload": span(started, completed),
        "to_run_end": span(completed, end),
        "answer_seconds": round(stack.answer_seconds[-1], 2),
        # What the run costs on an idle machine, whatever the load: the flow-run process's CPU.
        "flow_run_cpu_seconds": round(_children_cpu(worker) - cpu_before, 2),
        "load": round(os.getloadavg()[0], 1),
    }


def run_latency_bench(
    runs: int, rows: int, chunk_size: int, server_url: str, redis_url: str
) -> dict[str, Any]:
    """Time `runs` uploads of `rows` rows from the webhook's 202 to COMPLETED, after a warm-up."""
    name = f"pledgeflow_latency_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="pledgeflow-latency-"))
    try:
        files = write_exports(work / "exports", runs + 1, rows)
        with bench_services(name, server_url, redis_url, work, chunk_size) as (
            engine,
            database_url,
            api,
            env,
        ):
            env |= WORKER_SETTINGS
            with burst_stack(
                api, database_url, env, work, prefect_database=[f"{name}_prefect"]
            ) as stack:
                timeout = 300 + rows / 100
                uploads = [
                    store_web_app_upload(
                        engine, path, f"shop{n}.example.com", f"Campaign {n}", chunk_size
                    )
                    for n, path in enumerate(files)
                ]
                # The first run on a fresh server registers blocks and result types: warm-up.
                warm_up = _one_upload(stack, engine, uploads[0], timeout)
                measured = [_one_upload(stack, engine, u, timeout) for u in uploads[1:]]
                warm_parent_cpu = _own_cpu(warm_parents(stack.workers[0].pid))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = [m["seconds"] for m in measured if m["seconds"] is not None]
    cpu = [m["flow_run_cpu_seconds"] for m in measured]
    return {
        "rows": rows,
        "runs": runs,
        "worker_settings": WORKER_SETTINGS,
        "median_seconds": round(statistics.median(seconds), 2) if seconds else None,
        "seconds": seconds,
        "flow_run_cpu_median_seconds": round(statistics.median(cpu), 2) if cpu else None,
        # The imports a warm parent paid once for all the worker's runs (0: none started).
        "warm_parent_cpu_seconds": round(warm_parent_cpu, 2),
        "all_completed": all(m["run_state"] == "COMPLETED" for m in measured),
        "warm_up": warm_up,
        "measured": measured,
    }


def latency_report(figures: dict[str, Any]) -> list[str]:
    """The median and each run's breakdown, for the terminal."""
    lines = [
        f"webhook 202 → COMPLETED, {figures['rows']:,}-row uploads on a warm worker "
        f"({', '.join(f'{k}={v}' for k, v in figures['worker_settings'].items())}): "
        f"median {figures['median_seconds']} s of {figures['seconds']}; "
        f"all completed: {figures['all_completed']}; flow-run process CPU median "
        f"{figures['flow_run_cpu_median_seconds']} s; the warm parent's imports, paid once: "
        f"{figures['warm_parent_cpu_seconds']} s of CPU",
        "upload | s | picked up | process start | flow setup | upload (chunks, aggregation) | "
        "report and end | flow-run CPU s | load",
    ]
    for m in [figures["warm_up"], *figures["measured"]]:
        label = f"{m['upload_id']}{' (warm-up)' if m is figures['warm_up'] else ''}"
        lines.append(
            f"{label} | {m['seconds']} | {m['to_picked_up']} | {m['to_running']} | "
            f"{m['to_upload_started']} | {m['upload']} | {m['to_run_end']} | "
            f"{m['flow_run_cpu_seconds']} | {m['load']}"
        )
    return lines
