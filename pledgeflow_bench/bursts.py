"""A burst of web-app uploads delivered through the webhook, as a web app would send them.

`BurstStack` deploys prefect.yaml to a Prefect server, applies `pledgeflow limits`, starts
process workers and the webhook, and samples while uploads drain: connections in
`pg_stat_activity`, the workers' memory (worker and flow-run processes together) and how many
flow-run processes run at once. The bench's burst mode and the burst tests both use it.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from deployments.webhook import sign
from pledgeflow.limits import DB_WRITES_LIMIT
from pledgeflow_bench.exports import write_kickstarter_export
from pledgeflow_bench.warm import warm_parents
from pledgeflow_bench.web_app import insert_web_app_upload, web_app_project
from pledgeflow_bench.workers import POOL, ROOT, _wait_for, stop_process

FINAL_UPLOAD = ("COMPLETED", "FAILED")
FINAL_RUN = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def store_web_app_upload(
    engine: Engine, csv_path: Path, shop: str, project: str, chunk_size: int
) -> int:
    """Store a CSV as the web app does: plain SQL, a PENDING upload and its chunk rows."""
    with csv_path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        headers = next(reader)
        rows = list(reader)
    with engine.begin() as conn:
        project_id = web_app_project(conn, shop, project)
        chunks = [rows[start : start + chunk_size] for start in range(0, len(rows), chunk_size)]
        return insert_web_app_upload(conn, project_id, shop, csv_path.name, headers, chunks)


def write_exports(work: Path, count: int, rows: int) -> list[Path]:
    """`count` different synthetic Kickstarter exports of `rows` rows each."""
    work.mkdir(parents=True, exist_ok=True)
    return [
        write_kickstarter_export(work / f"burst-{n}.csv", rows, seed=3000 + n).path
        for n in range(count)
    ]


@dataclass
class Peaks:
    """The highest values seen while sampling."""

    connections: int = 0
    stack_connections: int = 0
    pledgeflow_connections: int = 0
    worker_rss_bytes: int = 0
    # Each worker's own peak (the worker and its flow-run processes); the total above is the
    # peak of their sum.
    worker_rss_each_bytes: list[int] = field(default_factory=list)
    flow_run_processes: int = 0
    # Chunks PROCESSING at once (each is claimed and written inside a db-writes slot), and
    # the slots the Prefect server counted as taken.
    chunk_writers: int = 0
    write_slots: int = 0
    loads: list[float] = field(default_factory=list)
    samples: int = 0

    def as_dict(self) -> dict[str, Any]:
        """The peaks, memory in MiB, and the 1-minute load average while sampling."""
        return {
            "connections": self.connections,
            "stack_connections": self.stack_connections,
            "pledgeflow_connections": self.pledgeflow_connections,
            "worker_rss_mib": round(self.worker_rss_bytes / 2**20),
            "worker_rss_mib_each": [round(b / 2**20) for b in self.worker_rss_each_bytes],
            "flow_run_processes": self.flow_run_processes,
            "chunk_writers": self.chunk_writers,
            "write_slots": self.write_slots,
            "load_mean": round(statistics.fmean(self.loads), 1) if self.loads else None,
            "load_max": round(max(self.loads), 1) if self.loads else None,
            "samples": self.samples,
        }


def _tree_rss(pids: list[int]) -> tuple[list[int], int]:
    """RSS of each worker with all its descendants and its warm parent's (`pledgeflow.
    warm_start`), and how many of them run a flow: a `python -m prefect.engine` or a child
    forked by a warm parent. (A forked child shares the parent's pages until it writes them,
    and RSS counts shared pages in each process: the sum is an upper bound.)"""
    each = []
    runs = 0
    for pid in pids:
        rss = 0
        try:
            root = psutil.Process(pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        forked: list[psutil.Process] = []
        for parent in warm_parents(pid):
            try:
                forked += parent.children(recursive=True)
            except psutil.NoSuchProcess:
                continue
            tree.append(parent)
        # The first run's launcher started the warm parent: until that launcher ends, the parent
        # and its runs are also the worker's descendants; each process counts once.
        forked_pids = {p.pid for p in forked}
        unique = {p.pid: p for p in [*tree, *forked]}
        for pid_, proc in unique.items():
            try:
                rss += proc.memory_info().rss
                if pid_ in forked_pids or "prefect.engine" in " ".join(proc.cmdline()):
                    runs += 1
            except psutil.NoSuchProcess:
                continue
        each.append(rss)
    return each, runs


def _peak_each(peaks: list[int], now: list[int]) -> list[int]:
    """The element-wise maximum of the peaks so far and the values now."""
    return [max(value, peaks[n] if n < len(peaks) else 0) for n, value in enumerate(now)]


@dataclass
class BurstStack:
    """Deployments, limits, workers and the webhook for one burst, with a sampler."""

    api: str
    database_url: str
    env: dict[str, str]
    work: Path
    secret: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    webhook: str = ""
    peaks: Peaks = field(default_factory=Peaks)
    limits: dict[str, Any] = field(default_factory=dict)
    databases: list[str] = field(default_factory=list)
    # Seconds each webhook took to answer, in the order they were sent.
    answer_seconds: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def api_client(self) -> AbstractContextManager[httpx.Client]:
        """An httpx client for the Prefect API, authenticated and with a CSRF token as
        Prefect's own client (the server runs with basic auth and CSRF protection on)."""
        return api_client(self.api, self.env.get("PREFECT_API_AUTH_STRING"))

    def deliver(self, upload_ids: list[int], at_once: int = 16) -> dict[int, str]:
        """Post one signed webhook per upload, `at_once` in flight; return their flow runs."""
        self.answer_seconds = []

        def post(upload_id: int) -> tuple[int, str]:
            body = json.dumps({"upload_id": upload_id}).encode()
            stamp = str(int(time.time()))
            sent = time.perf_counter()
            answer = httpx.post(
                f"{self.webhook}/webhooks/uploads",
                content=body,
                headers={
                    "content-type": "application/json",
                    "X-Pledgeflow-Timestamp": stamp,
                    "X-Pledgeflow-Signature": sign(self.secret, stamp, body),
                },
                timeout=120,
            )
            self.answer_seconds.append(time.perf_counter() - sent)
            if answer.status_code != 202:
                raise RuntimeError(f"webhook answered {answer.status_code}: {answer.text[:200]}")
            return upload_id, str(answer.json()["flow_run_id"])

        with ThreadPoolExecutor(max_workers=max(1, min(at_once, len(upload_ids)))) as pool:
            return dict(pool.map(post, upload_ids))

    def upload_states(self, engine: Engine, upload_ids: list[int]) -> dict[int, str]:
        """Each upload's status in the database."""
        with engine.connect() as conn:
            return {
                int(r.id): str(r.status)
                for r in conn.execute(
                    text("SELECT id, status FROM csv_upload WHERE id = ANY(:ids)"),
                    {"ids": upload_ids},
                )
            }

    def run_states(self, runs: list[str]) -> dict[str, str]:
        """Each flow run's state type on the Prefect server."""
        with self.api_client() as client:
            answer = client.post(
                "/flow_runs/filter",
                json={"flow_runs": {"id": {"any_": runs}}, "limit": 200},
                timeout=60,
            )
        answer.raise_for_status()
        return {str(r["id"]): str(r["state_type"]) for r in answer.json()}

    def wait_drained(
        self, engine: Engine, runs: dict[int, str], timeout: float
    ) -> tuple[dict[int, str], dict[str, str]]:
        """Wait until every upload and its flow run have ended; return both states."""
        deadline = time.monotonic() + timeout
        run_ids = list(runs.values())
        while True:
            uploads = self.upload_states(engine, list(runs))
            states: dict[str, str] = {}
            try:
                for start in range(0, len(run_ids), 200):
                    states |= self.run_states(run_ids[start : start + 200])
            except httpx.HTTPError:
                # A Prefect server at a load average of 35 may not answer within the timeout;
                # that is no reason to give up a burst that is still draining.
                states = {run: "UNKNOWN" for run in run_ids}
            if all(s in FINAL_UPLOAD for s in uploads.values()) and all(
                s in FINAL_RUN for s in states.values()
            ):
                return uploads, states
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"timed out after {timeout:.0f} s: uploads {sorted(uploads.values())}, "
                    f"runs {sorted(states.values())}"
                )
            time.sleep(1)

    def _sample(self, admin_url: str) -> None:
        engine = create_engine(
            admin_url, connect_args={"application_name": "pledgeflow-burst-sampler"}
        )
        slots_at = 0.0
        try:
            with engine.connect() as conn, self.api_client() as api:
                conn.execution_options(isolation_level="AUTOCOMMIT")
                while not self._stop.is_set():
                    row = conn.execute(
                        text(
                            "SELECT count(*) AS total, "
                            "count(*) FILTER (WHERE datname = ANY(:dbs)) AS stack, "
                            "count(*) FILTER (WHERE application_name = 'pledgeflow') AS ours "
                            "FROM pg_stat_activity WHERE backend_type = 'client backend' "
                            "AND pid <> pg_backend_pid()"
                        ),
                        {"dbs": self.databases},
                    ).one()
                    each, runs = _tree_rss([w.pid for w in self.workers])
                    peaks = self.peaks
                    peaks.connections = max(peaks.connections, int(row.total))
                    peaks.stack_connections = max(peaks.stack_connections, int(row.stack))
                    peaks.pledgeflow_connections = max(peaks.pledgeflow_connections, int(row.ours))
                    peaks.worker_rss_bytes = max(peaks.worker_rss_bytes, sum(each))
                    peaks.worker_rss_each_bytes = _peak_each(peaks.worker_rss_each_bytes, each)
                    peaks.flow_run_processes = max(peaks.flow_run_processes, runs)
                    writers = conn.execute(
                        text("SELECT count(*) FROM csv_upload_chunk WHERE status = 'PROCESSING'")
                    ).scalar_one()
                    peaks.chunk_writers = max(peaks.chunk_writers, int(writers))
                    if time.monotonic() - slots_at >= 1:  # the Prefect server is busy enough
                        slots_at = time.monotonic()
                        peaks.write_slots = max(peaks.write_slots, _taken_slots(api))
                        peaks.loads.append(os.getloadavg()[0])
                    peaks.samples += 1
                    self._stop.wait(0.2)
        finally:
            engine.dispose()


def _run(args: list[str], env: dict[str, str], cwd: Path, what: str) -> str:
    done = subprocess.run(  # noqa: S603 - our own interpreter's scripts
        args, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


@contextmanager
def burst_stack(
    api: str,
    database_url: str,
    env: dict[str, str],
    work: Path,
    *,
    workers: int = 1,
    worker_limit: int | None = None,
    reserve: int = 40,
    prefect_database: list[str] | None = None,
) -> Iterator[BurstStack]:
    """Deploy, size the limits from the database's max_connections (keeping `reserve`), start
    `workers` process workers (`--limit worker_limit` each, if given) and the webhook."""
    bin_dir = Path(sys.executable).parent
    secret = env.get("PLEDGEFLOW_WEBHOOK_SECRET") or "burst-secret"
    env = {
        **env,
        "PREFECT_API_URL": api,
        "PLEDGEFLOW_DATABASE_URL": database_url,
        "PLEDGEFLOW_WEBHOOK_SECRET": secret,
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    }
    prefect = str(bin_dir / "prefect")
    _run(
        [prefect, "work-pool", "create", POOL, "--type", "process", "--overwrite"],
        env,
        work,
        "pool",
    )
    _run([prefect, "--no-prompt", "deploy", "--all"], env, ROOT, "prefect deploy")
    applied = _run(
        [str(bin_dir / "pledgeflow"), "limits", "apply", "--reserve", str(reserve)],
        env,
        work,
        "pledgeflow limits apply",
    )
    plan = json.loads(
        _run(
            [str(bin_dir / "pledgeflow"), "limits", "plan", "--reserve", str(reserve)],
            env,
            work,
            "pledgeflow limits plan",
        )
    )
    stack = BurstStack(api=api, database_url=database_url, env=env, work=work, secret=secret)
    stack.databases = [str(make_url(database_url).database), *(prefect_database or [])]
    stack.limits = {**plan, "applied": applied.strip().splitlines()}
    hook_port = free_port()
    with ExitStack() as procs:
        for n in range(workers):
            log = procs.enter_context((work / f"burst-worker-{n}.log").open("wb"))
            args = [prefect, "worker", "start", "--pool", POOL]
            if worker_limit:
                args += ["--limit", str(worker_limit)]
            worker = subprocess.Popen(  # noqa: S603 - our own interpreter's prefect script
                args, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
            procs.callback(stop_process, worker)
            stack.workers.append(worker)
        log = procs.enter_context((work / "burst-webhook.log").open("wb"))
        hook = subprocess.Popen(  # noqa: S603 - our own interpreter's pledgeflow script
            [str(bin_dir / "pledgeflow"), "webhook", "--port", str(hook_port)],
            env=env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        procs.callback(stop_process, hook)
        stack.webhook = f"http://127.0.0.1:{hook_port}"
        # A loaded machine (a load average of 20 on two cores) takes minutes to import them.
        _wait_logged(lambda: _healthy(f"{stack.webhook}/healthz"), "the webhook", work)
        _wait_logged(lambda: _online_workers(stack) >= workers, f"{workers} workers", work)
        admin = make_url(database_url).render_as_string(hide_password=False)
        sampler = threading.Thread(target=stack._sample, args=(admin,), daemon=True)
        sampler.start()
        procs.callback(sampler.join, 10)
        procs.callback(stack._stop.set)
        yield stack


def _wait_logged(check: Any, what: str, work: Path, timeout: float = 300) -> None:
    """Wait for `check`; on timeout, fail with the tails of the webhook's and workers' logs."""
    try:
        _wait_for(check, timeout, what)
    except RuntimeError as exc:
        tails = [
            f"{log.name}:\n{log.read_text(errors='replace')[-1500:]}"
            for log in sorted(work.glob("burst-*.log"))
        ]
        raise RuntimeError("\n".join([str(exc), *tails])) from exc


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def api_client(api: str, auth: str | None) -> Iterator[httpx.Client]:
    """An httpx client for a Prefect API with basic auth (`user:password`, if given) and a CSRF
    token, which a server with CSRF protection on requires of every POST."""
    user, _, password = (auth or "").partition(":")
    with httpx.Client(base_url=api, auth=(user, password) if auth else None, timeout=30) as client:
        name = f"pledgeflow-burst-{uuid.uuid4().hex}"
        try:
            answer = client.get("/csrf-token", params={"client": name})
        except httpx.TransportError:  # GETs need no token; a POST then fails and is retried
            answer = httpx.Response(503)
        if answer.status_code == 200:  # 422 when the server has CSRF protection off
            client.headers.update(
                {"Prefect-Csrf-Token": answer.json()["token"], "Prefect-Csrf-Client": name}
            )
        yield client


def _online_workers(stack: BurstStack) -> int:
    try:
        with stack.api_client() as client:
            answer = client.post(f"/work_pools/{POOL}/workers/filter", json={})
            answer.raise_for_status()
    except httpx.HTTPError:
        return 0
    return sum(1 for w in answer.json() if w.get("status") == "ONLINE")


def _taken_slots(client: httpx.Client) -> int:
    """Slots of the database-writes limit held right now, as the Prefect server counts them."""
    try:
        answer = client.get(f"/v2/concurrency_limits/{DB_WRITES_LIMIT}")
        answer.raise_for_status()
        return int(answer.json()["active_slots"])
    except httpx.HTTPError:
        return 0


def answer_figures(seconds: list[float]) -> dict[str, float | None]:
    """Median and slowest webhook answer."""
    if not seconds:
        return {"answer_median_seconds": None, "answer_max_seconds": None}
    return {
        "answer_median_seconds": round(statistics.median(seconds), 2),
        "answer_max_seconds": round(max(seconds), 2),
    }
