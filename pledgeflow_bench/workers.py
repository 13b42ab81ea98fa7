"""Past one machine: two Prefect workers on one work pool against one importing after the other.

Two different synthetic exports (two shops, two seeds) are staged as uploads, as the web app
stores them; then `process-upload` flow runs are created for both at once and picked up by real
`prefect worker` processes on a process work pool of a temporary Prefect server:

- one worker (`--limit 1`): it runs the two flow runs one after the other;
- two workers (`--limit 1` each): each runs one, at the same time, on the shared PostgreSQL.

Each measurement starts from empty tables and counts from the creation of the runs to the end of
the last one, so both include the same worker pick-up and flow-run process start. The tables
left by both measurements must be identical, row for row.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Connection, Engine, func, select, text

from pledgeflow_bench.exports import write_kickstarter_export
from schemas.tables import CsvUploadChunk

ROOT = Path(__file__).resolve().parents[1]  # the checkout: prefect.yaml and flows/
POOL = "pledgeflow-process"  # the work pool prefect.yaml deploys to
DEPLOYMENT = "process-upload/process-upload"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

# Business content of the five tables, without surrogate ids or positions: what two runs that
# assign ids in different orders must agree on.
CONTENT = {
    "backer": "SELECT shop, email, name, phone, country, external_id FROM backer",
    "product": (
        "SELECT j.shop, j.name AS project, p.name, p.kind, p.external_id, p.price, p.currency "
        "FROM product p JOIN project j ON j.id = p.project_id"
    ),
    "pledge": (
        "SELECT j.shop, j.name AS project, p.pledge_id, b.email, r.name AS reward, p.amount, "
        "p.shipping_amount, p.currency, p.status, p.pledged_at, p.platform FROM pledge p "
        "JOIN project j ON j.id = p.project_id JOIN backer b ON b.id = p.backer_id "
        "LEFT JOIN product r ON r.id = p.product_id"
    ),
    "survey": (
        "SELECT j.shop, j.name AS project, p.pledge_id, s.responded_at, s.shipping_name, "
        "s.shipping_address_1, s.shipping_city, s.shipping_postal_code, s.answers::text "
        "FROM survey s JOIN pledge p ON p.id = s.pledge_id JOIN project j ON j.id = p.project_id"
    ),
    "inventory": (
        "SELECT j.shop, j.name AS project, p.pledge_id, r.name AS product, i.quantity "
        "FROM inventory i JOIN survey s ON s.id = i.survey_id JOIN pledge p ON p.id = s.pledge_id "
        "JOIN project j ON j.id = p.project_id JOIN product r ON r.id = i.product_id"
    ),
}


def content_digests(engine: Engine) -> dict[str, tuple[int, str]]:
    """Per table: (rows, md5 of every row's business content in a fixed order)."""
    out = {}
    with engine.connect() as conn:
        for table, query in CONTENT.items():
            count, digest = conn.execute(
                text(
                    "SELECT count(*), "
                    "md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) "
                    f"FROM ({query}) t"
                )
            ).one()
            out[table] = (int(count), str(digest))
    return out


def chunks_from_cache(conn: Connection, upload_id: int | None = None) -> int:
    """How many chunks (of one upload, or of all) took their rows from the row cache."""
    query = select(func.count()).where(CsvUploadChunk.stats["rows_from_cache"].as_boolean())
    if upload_id is not None:
        query = query.where(CsvUploadChunk.upload_id == upload_id)
    return int(conn.execute(query).scalar_one())


def chunks_skipped(conn: Connection, upload_id: int) -> int:
    """How many chunks of an upload completed as unchanged, without writing (`chunk_skip`)."""
    query = select(func.count()).where(
        CsvUploadChunk.upload_id == upload_id,
        CsvUploadChunk.stats["unchanged_since"].isnot(None),
    )
    return int(conn.execute(query).scalar_one())


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float, what: str) -> str:
    """Run a child process to completion; its standard output, or an error naming `what`."""
    done = subprocess.run(  # noqa: S603 - our own interpreter and its scripts
        args, env=env, cwd=cwd, capture_output=True, text=True, check=False, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def _prefect(args: list[str], env: dict[str, str], cwd: Path) -> None:
    prefect = Path(sys.executable).with_name("prefect")
    _run([str(prefect), *args], env, cwd, 300, f"prefect {' '.join(args)}")


def _stage(path: Path, shop: str, env: dict[str, str], chunk_size: int) -> int:
    """Stage a file as the web app would, in a child process that uses the bench database."""
    out = _run(
        [sys.executable, "-P", "-m", "pledgeflow_bench.workers", str(path), shop, str(chunk_size)],
        env,
        path.parent,
        1800,
        f"staging {path.name}",
    )
    return int(out.strip().splitlines()[-1])


@contextmanager
def _workers(count: int, env: dict[str, str], api: str, logs: Path) -> Iterator[None]:
    """`count` process workers on the pool, each running one flow run at a time."""
    prefect = Path(sys.executable).with_name("prefect")
    with ExitStack() as stack:
        for n in range(count):
            log = stack.enter_context((logs / f"worker-{count}-{n}.log").open("wb"))
            worker = subprocess.Popen(  # noqa: S603 - our own interpreter's prefect script
                [str(prefect), "worker", "start", "--pool", POOL, "--limit", "1"],
                env=env,
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            stack.callback(stop_process, worker)
        _wait_for(lambda: _online_workers(api) >= count, 90, f"{count} workers to come online")
        yield


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """Terminate a child process, killing it if it has not exited within 30 s."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _online_workers(api: str) -> int:
    answer = httpx.post(f"{api}/work_pools/{POOL}/workers/filter", json={}, timeout=10)
    answer.raise_for_status()
    return sum(1 for w in answer.json() if w.get("status") == "ONLINE")


def _wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def _run_uploads(api: str, upload_ids: list[int], timeout: float) -> dict[str, Any]:
    """Create one flow run per upload at once; wait for all of them to end."""
    deployment = httpx.get(f"{api}/deployments/name/{DEPLOYMENT}", timeout=10).json()
    began = time.perf_counter()
    runs = []
    for upload_id in upload_ids:
        answer = httpx.post(
            f"{api}/deployments/{deployment['id']}/create_flow_run",
            json={"parameters": {"upload_id": upload_id}},
            timeout=10,
        )
        answer.raise_for_status()
        runs.append(answer.json()["id"])
    states: dict[str, dict[str, Any]] = {}

    def finished() -> bool:
        for run_id in runs:
            run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
            states[run_id] = run
        return all((r.get("state_type") or "") in FINAL for r in states.values())

    try:
        _wait_for(finished, timeout, "the flow runs to finish")
    except BaseException:
        _cancel(api, runs)  # the workers, still running, stop the flow-run processes
        raise
    seconds = time.perf_counter() - began
    return {
        "seconds": round(seconds, 3),
        "states": sorted(r["state_type"] for r in states.values()),
        "run_seconds": sorted(round(r.get("total_run_time") or 0.0, 1) for r in states.values()),
    }


def _cancel(api: str, runs: list[str]) -> None:
    """Ask for the runs to be cancelled; best effort, as the bench is failing already."""
    for run_id in runs:
        with suppress(httpx.HTTPError):
            httpx.post(
                f"{api}/flow_runs/{run_id}/set_state",
                json={"state": {"type": "CANCELLING"}, "force": True},
                timeout=10,
            )


def measure_workers(
    rows: int,
    chunk_size: int,
    child_env: dict[str, str],
    engine: Engine,
    api: str,
    work: Path,
    empty: Any,
) -> dict[str, Any]:
    """Process two different `rows`-row uploads with one worker, then with two at once.

    `child_env` carries the bench database and pipeline settings; `api` is a Prefect server
    this measurement may deploy to; `empty` empties the bench database's tables."""
    if not (ROOT / "prefect.yaml").is_file():
        raise RuntimeError(f"no prefect.yaml in {ROOT}: the workers measurement needs a checkout")
    files = [
        write_kickstarter_export(work / f"workers-{n}.csv", rows, seed=2020 + n).path
        for n in (1, 2)
    ]
    env = {
        **child_env,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(work / "prefect-client-home"),
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    }
    _prefect(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env, work)
    _prefect(["--no-prompt", "deploy", "--name", "process-upload"], env, ROOT)
    figures: dict[str, Any] = {"rows_per_upload": rows, "uploads": len(files)}
    for label, count in (("one_worker", 1), ("two_workers", 2)):
        empty(engine)
        # Keys of their own: each measurement imports the files for the first time, so the
        # second does not take the rows the first left in the row cache.
        prefix = f"{env.get('PLEDGEFLOW_REDIS_KEY_PREFIX', 'pledgeflow')}_{label}"
        run_env = env | {"PLEDGEFLOW_REDIS_KEY_PREFIX": prefix}
        upload_ids = [
            _stage(path, f"workers-{n}.example.com", run_env, chunk_size)
            for n, path in enumerate(files, 1)
        ]
        with _workers(count, run_env, api, work):
            # A flow-run process takes tens of seconds to start on a busy machine: a generous
            # floor, then 100 rows a second at worst.
            measured = _run_uploads(api, upload_ids, timeout=300 + rows * len(files) / 100)
        measured["tables"] = content_digests(engine)
        with engine.connect() as conn:
            measured["chunks_from_cache"] = chunks_from_cache(conn)
        measured["rows_per_second"] = round(rows * len(files) / measured["seconds"], 1)
        figures[label] = measured
    one, two = figures["one_worker"], figures["two_workers"]
    figures["same_tables"] = one["tables"] == two["tables"]
    figures["all_completed"] = set(one["states"]) == set(two["states"]) == {"COMPLETED"}
    figures["speedup"] = round(one["seconds"] / two["seconds"], 3)
    return figures


def _child(argv: list[str]) -> None:
    from pledgeflow.staging import stage_file

    path, shop, chunk_size = Path(argv[0]), argv[1], int(argv[2])
    print(stage_file(path, shop=shop, project="Workers Campaign", chunk_size=chunk_size))


if __name__ == "__main__":
    _child(sys.argv[1:])
