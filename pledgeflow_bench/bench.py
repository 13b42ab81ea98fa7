"""`pledgeflow bench`: the import pipeline against two baselines, in one run, on one PostgreSQL.

What one run does, in a database it creates and drops:
1. writes a synthetic Kickstarter 2020+ export of N rows (`pledgeflow_bench.exports`), streaming;
2. imports it through the full pipeline (`stage_file` + the `process-upload` flow) in a child
   process, so the peak RSS measured is the import's own, then imports the unchanged file again,
   first as configured (mapped rows come from the Redis row cache) and then with that cache off;
3. loads the same file with the hand-tuned baseline and the first rows with the naive ORM
   baseline (`pledgeflow_bench.baselines`), into emptied tables, and twice (a first load and a
   re-load) with dlt (`pledgeflow_bench.dlt_peer`) into a dataset of its own, each in a child
   process;
4. reports rows/s, ratios, the re-import speed-up, peak RSS and the share of the flow's wall time
   spent outside chunk work (Prefect orchestration), and writes them as JSON.

Without Redis (`--no-redis`), the imports run as `pledgeflow import` does without one: no row
cache, so one re-import.

Without `PREFECT_API_URL`, the pipeline talks to a temporary Prefect server started for the run
on the same PostgreSQL, with the task-run recorder batch settings production should use; with it,
to that server.
"""

from __future__ import annotations

import ipaddress
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
from alembic import command
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from pledgeflow.migrations.runner import alembic_config
from pledgeflow.results import redis_url_shown
from pledgeflow_bench.baselines import load_hand_tuned, load_naive_orm, prepare_target
from pledgeflow_bench.exports import write_kickstarter_export
from pledgeflow_bench.workers import (
    chunks_from_cache,
    chunks_skipped,
    measure_workers,
    stop_process,
)

SHOP, PROJECT = "bench.example.com", "Benchmark Campaign"
DATA_TABLES = ("backer", "product", "pledge", "survey", "inventory")
DLT_DATASET = "dlt_peer"  # the PostgreSQL schema dlt loads into, beside pledgeflow's tables
RECORDER_BATCH = 200  # prefect-notes section 10: 100-200 keeps run history minutes closer
DEFAULT_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and where."""

    rows: int
    chunk_size: int
    task_concurrency: int
    pool_size: int
    naive_rows: int = 10_000
    server_url: str = DEFAULT_SERVER
    workers_rows: int = 0
    redis_url: str | None = DEFAULT_REDIS  # None: the imports run without Redis


def _rate(rows: int, seconds: float) -> float:
    return round(rows / seconds, 1) if seconds > 0 else 0.0


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _cpu_ticks() -> tuple[int, int] | None:
    """(busy, total) CPU ticks of the whole machine so far, from /proc/stat; None elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])
    return total - idle, total


def _postmaster_pid(engine: Engine) -> int | None:
    """The PostgreSQL server's main process, when it runs on this machine (else None)."""
    with engine.connect() as conn:
        backend = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        address = conn.execute(text("SELECT inet_server_addr()")).scalar()
    if address is not None and not ipaddress.ip_address(address).is_loopback:
        return None
    try:
        # /proc/<pid>/stat: the parent's pid is the second field after the command's ")".
        return int(Path(f"/proc/{backend}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _reaped_cpu(pid: int | None) -> float | None:
    """CPU seconds of the ended child processes of `pid` (its reaped children's user + system
    time, /proc/<pid>/stat), or None where the platform does not tell."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@contextmanager
def _machine_busy(into: dict[str, Any], postmaster: int | None = None) -> Iterator[None]:
    """Store in `into["machine_busy"]` the share of all CPUs busy while the block ran (every
    process: the import, PostgreSQL, the Prefect server), when the platform tells; and with the
    local server's `postmaster`, in `into["postgres_cpu_seconds"]` the CPU of the server
    processes that ended meanwhile: the loader's own connections (closed when it ends) and
    autovacuum workers, not the Prefect server's pooled connections."""
    before, server_before = _cpu_ticks(), _reaped_cpu(postmaster)
    yield
    time.sleep(0.3)  # the loader's connections have closed: let the server reap them
    after, server_after = _cpu_ticks(), _reaped_cpu(postmaster)
    if before and after and after[1] > before[1]:
        into["machine_busy"] = round((after[0] - before[0]) / (after[1] - before[1]), 3)
    if server_before is not None and server_after is not None:
        into["postgres_cpu_seconds"] = round(server_after - server_before, 2)


@contextmanager
def _database(server_url: str, name: str) -> Iterator[str]:
    """A fresh database on the server; yields its URL and drops it afterwards."""
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def _redis_keys(url: str, prefix: str) -> Iterator[None]:
    """Checks that Redis answers; deletes the keys the run wrote under `prefix` afterwards."""
    client = redis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        raise RuntimeError(
            f"the benchmark needs Redis, as production does, and none answered ({exc}); "
            "start one or pass --redis-url"
        ) from exc
    try:
        yield
    finally:
        stale = list(client.scan_iter(match=f"{prefix}*", count=1000))
        for start in range(0, len(stale), 1000):
            client.delete(*stale[start : start + 1000])
        client.close()


def _migrate(engine: Engine) -> None:
    config = alembic_config()
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _prefect_api(
    server_url: str,
    name: str,
    workdir: Path,
    *,
    reuse_configured: bool = True,
    server_env: dict[str, str] | None = None,
) -> Iterator[str]:
    """The Prefect API the pipeline reports to: PREFECT_API_URL if set (and `reuse_configured`),
    else a temporary server on PostgreSQL, started here and stopped (with its database dropped)
    afterwards."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured and reuse_configured:
        yield configured
        return
    with _database(server_url, name) as url:
        port = _free_port()
        env = {
            **os.environ,
            "PREFECT_HOME": str(workdir / "prefect-home"),
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": make_url(url)
            .set(drivername="postgresql+asyncpg")
            .render_as_string(hide_password=False),
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": str(RECORDER_BATCH),
            "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": str(RECORDER_BATCH),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            **(server_env or {}),
        }
        log = (workdir / "prefect-server.log").open("wb")
        prefect = Path(sys.executable).with_name("prefect")
        server = subprocess.Popen(  # noqa: S603 - our own interpreter's prefect script
            [
                str(prefect),
                *("server", "start", "--host", "127.0.0.1", "--port", str(port)),
                *("--no-ui", "--analytics-off"),
            ],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        api = f"http://127.0.0.1:{port}/api"
        try:
            _wait_healthy(api, server)
            yield api
        finally:
            stop_process(server)
            log.close()


def _wait_healthy(api: str, server: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the temporary Prefect server exited ({server.returncode})")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as answer:  # noqa: S310
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the temporary Prefect server did not answer within {timeout:.0f} s")


def _table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one())
            for t in DATA_TABLES
        }


def _dlt_table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            t: int(conn.execute(text(f"SELECT count(*) FROM {DLT_DATASET}.{t}")).scalar_one())
            for t in DATA_TABLES
        }


def _empty(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            text(
                "TRUNCATE inventory, survey, pledge, product, backer, csv_upload_chunk, "
                "csv_upload, project RESTART IDENTITY CASCADE"
            )
        )


def _union_seconds(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of the (start, end) spans."""
    covered, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            covered += end - max(start, reach)
            reach = end
    return covered


def measure_pipeline(path: Path, chunk_size: int) -> dict[str, Any]:
    """Import `path` as `pledgeflow import` does and time it; run in the process measured.

    Chunk work is what happens between a chunk's claim and its completion (`started_at`,
    `completed_at`, written by the chunk function itself); the rest of the flow's wall time is
    orchestration. That is conservative: the start and aggregate tasks and each chunk's commit
    count as orchestration too.
    """
    from flows.process_upload import process_upload
    from pledgeflow.database import get_engine
    from pledgeflow.staging import stage_file
    from pledgeflow.uploads import read_upload

    started = time.time()
    upload_id = stage_file(path, shop=SHOP, project=PROJECT, chunk_size=chunk_size)
    staged = time.time()
    process_upload(upload_id, return_state=True)
    finished = time.time()
    result = read_upload(upload_id)
    with get_engine().connect() as conn:
        spans = [
            (s.timestamp(), e.timestamp())
            for s, e in conn.execute(
                text(
                    "SELECT started_at, completed_at FROM csv_upload_chunk "
                    "WHERE upload_id = :u AND completed_at IS NOT NULL"
                ),
                {"u": upload_id},
            )
        ]
        from_cache = chunks_from_cache(conn, upload_id)
        skipped = chunks_skipped(conn, upload_id)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    flow_seconds = finished - staged
    busy = _union_seconds([(max(s, staged), min(e, finished)) for s, e in spans])
    return {
        "upload_id": upload_id,
        "status": result.status,
        "imported_rows": result.imported_rows,
        "rejected_rows": result.rejected_rows,
        "chunks": result.total_chunks,
        "chunks_from_cache": from_cache,
        "chunks_skipped": skipped,
        "seconds": round(finished - started, 3),
        "stage_seconds": round(staged - started, 3),
        "flow_seconds": round(flow_seconds, 3),
        "chunk_work_seconds": round(busy, 3),
        "chunk_seconds_sum": round(sum(e - s for s, e in spans), 3),
        "orchestration_share": round(max(flow_seconds - busy, 0.0) / flow_seconds, 4),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        # CPU of the import process (Python: parsing, validation, COPY); the server's is apart.
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 2),
        "tables": (result.stats or {}).get("tables"),
    }


def _child_env(config: BenchConfig, database_url: str, api_url: str) -> dict[str, str]:
    """The environment of a process importing into the bench database."""
    redis = (
        {
            "PLEDGEFLOW_REDIS_URL": config.redis_url,
            # The bench database's name: this run's keys, deleted at its end.
            "PLEDGEFLOW_REDIS_KEY_PREFIX": make_url(database_url).database or "pledgeflow_bench",
        }
        if config.redis_url
        else {}
    )
    return {
        **{k: v for k, v in os.environ.items() if k != "PLEDGEFLOW_REDIS_URL"},
        **redis,
        "PLEDGEFLOW_DATABASE_URL": database_url,
        "PLEDGEFLOW_CHUNK_SIZE": str(config.chunk_size),
        "PLEDGEFLOW_TASK_CONCURRENCY": str(config.task_concurrency),
        "PLEDGEFLOW_DB_POOL_SIZE": str(config.pool_size),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_EPHEMERAL_ENABLED": "false",
    }


def _pipeline_in_child(
    config: BenchConfig,
    database_url: str,
    api_url: str,
    path: Path,
    workdir: Path,
    label: str,
    *,
    postmaster: int | None,
    **settings: str,
) -> dict[str, Any]:
    out = workdir / f"{label}.json"
    env = _child_env(config, database_url, api_url) | settings
    args = (path, config.chunk_size, out)
    return _child_figures(
        "pledgeflow_bench.bench", args, env, out, config.rows, "import", postmaster
    )


def _child_figures(
    module: str,
    args: tuple[object, ...],
    env: dict[str, str],
    out: Path,
    rows: int,
    what: str,
    postmaster: int | None,
) -> dict[str, Any]:
    """Run `module` with `args` in a process of its own, in `out`'s folder and logging beside
    it; the figures it wrote to `out`, with the machine's busy share and the server's CPU
    meanwhile (`_machine_busy`), and the rate."""
    busy: dict[str, Any] = {}
    log_path = out.with_suffix(".log")
    with log_path.open("wb") as log, _machine_busy(busy, postmaster):
        done = subprocess.run(  # noqa: S603 - our own interpreter and module
            # -P: the working directory must not shadow the installed package.
            [sys.executable, "-P", "-m", module, *map(str, args)],
            env=env,
            cwd=out.parent,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if done.returncode != 0 or not out.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"the {out.stem} {what} failed ({done.returncode}):\n{tail}")
    measured: dict[str, Any] = json.loads(out.read_text()) | busy
    measured["rows_per_second"] = _rate(rows, measured["seconds"])
    return measured


def _all_unchanged(tables: dict[str, dict[str, int]] | None) -> bool:
    return bool(tables) and all(
        c["created"] == c["updated"] == c["deleted"] == 0 for c in (tables or {}).values()
    )


def run_bench(config: BenchConfig, workdir: Path | None = None) -> dict[str, Any]:
    """Run every measurement once and return the figures."""
    name = f"pledgeflow_bench_{uuid.uuid4().hex[:8]}"
    own_dir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="pledgeflow-bench-")) if workdir is None else workdir
    figures: dict[str, Any] = {
        "config": asdict(config)
        | {
            "server_url": make_url(config.server_url).render_as_string(hide_password=True),
            "redis_url": redis_url_shown(config.redis_url) if config.redis_url else None,
        },
        "machine": {"cpus": os.cpu_count(), "load_at_start": _load()},
        "started_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        # The run's name: its databases and Redis keys begin with it.
        "run": name,
    }
    try:
        path = work / f"kickstarter-{config.rows}.csv"
        began = time.perf_counter()
        export = write_kickstarter_export(path, config.rows)
        figures["file"] = {
            "rows": export.rows,
            "bytes": export.size_bytes,
            "bad_rows": export.bad_rows,
            "repeated_emails": export.repeated_emails,
            "products": export.products,
            "inventory_lines": export.inventory_lines,
            "generate_seconds": round(time.perf_counter() - began, 2),
        }
        with (
            _redis_keys(config.redis_url, name) if config.redis_url else nullcontext(),
            _database(config.server_url, name) as database_url,
            _prefect_api(config.server_url, f"{name}_prefect", work) as api_url,
        ):
            engine = create_engine(database_url)
            try:
                _migrate(engine)
                with engine.connect() as conn:
                    figures["machine"]["postgres"] = conn.execute(
                        text("SHOW server_version")
                    ).scalar()
                figures.update(_measure_all(config, engine, database_url, api_url, path, work))
            finally:
                engine.dispose()
        if config.workers_rows:
            with _redis_keys(config.redis_url, name) if config.redis_url else nullcontext():
                figures["workers"] = _measure_workers(config, name, work)
        figures["machine"]["load_at_end"] = _load()
    finally:
        if own_dir:
            shutil.rmtree(work, ignore_errors=True)
    return figures


def _measure_workers(config: BenchConfig, name: str, work: Path) -> dict[str, Any]:
    """Two uploads through one worker, then two workers, on a temporary Prefect server of its
    own (deploying there never touches a configured server's deployments)."""
    with (
        _database(config.server_url, f"{name}_workers") as database_url,
        _prefect_api(
            config.server_url, f"{name}_workers_prefect", work, reuse_configured=False
        ) as api_url,
    ):
        engine = create_engine(database_url)
        try:
            _migrate(engine)
            return measure_workers(
                config.workers_rows,
                config.chunk_size,
                _child_env(config, database_url, api_url),
                engine,
                api_url,
                work,
                _empty,
            )
        finally:
            engine.dispose()


def _measure_all(
    config: BenchConfig, engine: Engine, database_url: str, api_url: str, path: Path, work: Path
) -> dict[str, Any]:
    # The server's CPU per loader: what its database work costs, apart from the loader's own.
    postmaster = _postmaster_pid(engine)
    first = _pipeline_in_child(
        config, database_url, api_url, path, work, "pipeline-first", postmaster=postmaster
    )
    first["load"] = _load()
    first["table_rows"] = _table_counts(engine)
    again = _pipeline_in_child(
        config, database_url, api_url, path, work, "pipeline-reimport", postmaster=postmaster
    )
    again["load"] = _load()
    again["all_unchanged"] = _all_unchanged(again["tables"])
    pipeline = {"first": first, "reimport": again}
    if config.redis_url:
        uncached = _pipeline_in_child(
            config,
            database_url,
            api_url,
            path,
            work,
            "pipeline-reimport-uncached",
            postmaster=postmaster,
            PLEDGEFLOW_ROW_CACHE_TTL_SECONDS="0",
        )
        uncached["load"] = _load()
        uncached["all_unchanged"] = _all_unchanged(uncached["tables"])
        pipeline["reimport_uncached"] = uncached

    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    _empty(engine)
    target = prepare_target(engine, SHOP, PROJECT, path.name)
    hand: dict[str, Any] = {}
    for label in ("first", "reload"):
        busy: dict[str, Any] = {}
        began = time.perf_counter()
        with _machine_busy(busy, postmaster):
            written = load_hand_tuned(dsn, path, target)
        seconds = time.perf_counter() - began
        hand[label] = {
            "seconds": round(seconds, 3),
            "rows_written": written,
            "rows_per_second": _rate(config.rows, seconds),
            "load": _load(),
        } | busy
        if label == "first":
            hand[label]["table_rows"] = _table_counts(engine)

    peer = {
        label: _dlt_in_child(config, database_url, path, work, f"dlt-{label}", postmaster)
        for label in ("first", "reload")
    }
    peer["first"]["table_rows"] = _dlt_table_counts(engine)

    naive: dict[str, Any] = {"rows": min(config.naive_rows, config.rows)}
    if naive["rows"]:
        _empty(engine)
        target = prepare_target(engine, SHOP, PROJECT, path.name)
        began = time.perf_counter()
        load_naive_orm(engine, path, target, naive["rows"])
        seconds = time.perf_counter() - began
        rate = naive["rows"] / seconds
        naive |= {
            "seconds": round(seconds, 3),
            "rows_per_second": round(rate, 1),
            "extrapolated_seconds": round(config.rows / rate, 1),
            "load": _load(),
        }

    pipeline_rate = first["rows_per_second"]
    ratios = {
        "pipeline_vs_hand_tuned": round(pipeline_rate / hand["first"]["rows_per_second"], 3),
        "pipeline_vs_dlt": round(pipeline_rate / peer["first"]["rows_per_second"], 3),
        "reimport_vs_dlt_reload": round(
            again["rows_per_second"] / peer["reload"]["rows_per_second"], 3
        ),
        "hand_tuned_vs_dlt": round(
            hand["first"]["rows_per_second"] / peer["first"]["rows_per_second"], 3
        ),
        "reimport_speedup": round(first["seconds"] / again["seconds"], 3),
        "hand_tuned_reload_speedup": round(hand["first"]["seconds"] / hand["reload"]["seconds"], 3),
        "dlt_reload_speedup": round(peer["first"]["seconds"] / peer["reload"]["seconds"], 3),
    }
    if "reimport_uncached" in pipeline:
        ratios["reimport_uncached_speedup"] = round(
            first["seconds"] / pipeline["reimport_uncached"]["seconds"], 3
        )
    if naive.get("rows_per_second"):
        ratios["pipeline_vs_naive_orm"] = round(pipeline_rate / naive["rows_per_second"], 1)
    return {
        "pipeline": pipeline,
        "hand_tuned": hand,
        "dlt": peer,
        "naive_orm": naive,
        "ratios": ratios,
        "same_table_rows": first["table_rows"] == hand["first"]["table_rows"],
        "dlt_same_table_rows": first["table_rows"] == peer["first"]["table_rows"],
    }


def _dlt_in_child(
    config: BenchConfig,
    database_url: str,
    path: Path,
    work: Path,
    label: str,
    postmaster: int | None,
) -> dict[str, Any]:
    """One dlt load of `path`, in a process of its own (its peak RSS and CPU are the load's)."""
    out = work / f"{label}.json"
    dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    env = {**os.environ, "RUNTIME__DLTHUB_TELEMETRY": "false", "RUNTIME__LOG_LEVEL": "ERROR"}
    args = (path, dsn, DLT_DATASET, work, out, SHOP, PROJECT)
    measured = _child_figures(
        "pledgeflow_bench.dlt_peer", args, env, out, config.rows, "load", postmaster
    )
    measured["load"] = _load()
    return measured


def report(figures: dict[str, Any]) -> list[str]:
    """The figures as lines for a terminal."""
    first, again = figures["pipeline"]["first"], figures["pipeline"]["reimport"]
    uncached = figures["pipeline"].get("reimport_uncached")
    hand, naive, ratios = figures["hand_tuned"], figures["naive_orm"], figures["ratios"]
    peer = figures["dlt"]
    file = figures["file"]
    lines = [
        f"{file['rows']:,} rows ({file['bytes'] / 1e6:.1f} MB, {file['bad_rows']} to reject), "
        f"chunk size {figures['config']['chunk_size']}, "
        f"{figures['config']['task_concurrency']} chunk tasks at once, "
        f"PostgreSQL {figures['machine'].get('postgres')}, {figures['machine']['cpus']} CPUs, "
        f"load {figures['machine']['load_at_start']} -> {figures['machine'].get('load_at_end')}, "
        f"Redis: {'yes (row cache)' if figures['config']['redis_url'] else 'none'}",
        f"pipeline, first import   {first['rows_per_second']:>10,.0f} rows/s  "
        f"{first['seconds']:8.1f} s (stage {first['stage_seconds']:.1f} s, flow "
        f"{first['flow_seconds']:.1f} s, {first['chunks']} chunks)  {first['status']}",
        f"pipeline, re-import      {again['rows_per_second']:>10,.0f} rows/s  "
        f"{again['seconds']:8.1f} s  every row unchanged: {again['all_unchanged']}, "
        f"{again['chunks_from_cache']} of {again['chunks']} chunks' rows from the row cache, "
        f"{again.get('chunks_skipped', 0)} skipped as unchanged",
    ]
    if uncached:
        lines.append(
            f"  same, row cache off    {uncached['rows_per_second']:>10,.0f} rows/s  "
            f"{uncached['seconds']:8.1f} s  every row unchanged: {uncached['all_unchanged']}, "
            f"{uncached.get('chunks_skipped', 0)} of {uncached['chunks']} chunks skipped as "
            "unchanged"
        )
    lines += [
        f"dlt, first load          {peer['first']['rows_per_second']:>10,.0f} rows/s  "
        f"{peer['first']['seconds']:8.1f} s  (peak RSS {peer['first']['peak_rss_mb']:.0f} MB, "
        f"CPU {peer['first']['cpu_seconds']:.1f} s, dlt {peer['first'].get('dlt_version')})",
        f"dlt, re-load             {peer['reload']['rows_per_second']:>10,.0f} rows/s  "
        f"{peer['reload']['seconds']:8.1f} s  (peak RSS {peer['reload']['peak_rss_mb']:.0f} MB, "
        f"CPU {peer['reload']['cpu_seconds']:.1f} s)",
        f"hand-tuned, first load   {hand['first']['rows_per_second']:>10,.0f} rows/s  "
        f"{hand['first']['seconds']:8.1f} s",
        f"hand-tuned, reload       {hand['reload']['rows_per_second']:>10,.0f} rows/s  "
        f"{hand['reload']['seconds']:8.1f} s",
    ]
    if naive.get("rows_per_second"):
        lines.append(
            f"naive ORM ({naive['rows']:,} rows) {naive['rows_per_second']:>10,.0f} rows/s  "
            f"{naive['seconds']:8.1f} s  ({naive['extrapolated_seconds']:,.0f} s for all rows)"
        )
    lines += [
        f"pipeline / dlt: {ratios['pipeline_vs_dlt']:.2f} first import, "
        f"{ratios['reimport_vs_dlt_reload']:.2f} re-import against dlt's re-load   "
        f"hand-tuned / dlt: {ratios['hand_tuned_vs_dlt']:.2f}",
        f"pipeline / hand-tuned: {ratios['pipeline_vs_hand_tuned']:.2f}"
        + (
            f"   pipeline / naive ORM: {ratios['pipeline_vs_naive_orm']:.0f}x"
            if "pipeline_vs_naive_orm" in ratios
            else ""
        ),
        f"re-import speed-up: {ratios['reimport_speedup']:.2f}x"
        + (
            f", {ratios['reimport_uncached_speedup']:.2f}x with the row cache off"
            if "reimport_uncached_speedup" in ratios
            else ""
        )
        + f"   (hand-tuned reload: {ratios['hand_tuned_reload_speedup']:.2f}x, "
        f"dlt re-load: {ratios['dlt_reload_speedup']:.2f}x)",
        f"import process: peak RSS {first['peak_rss_mb']:.0f} MB first, "
        f"{again['peak_rss_mb']:.0f} MB re-import; CPU {first['cpu_seconds']:.1f} s first, "
        f"{again['cpu_seconds']:.1f} s re-import",
        "all CPUs busy (import, PostgreSQL, Prefect server): "
        + ", ".join(
            f"{what} {run['machine_busy']:.0%}"
            for what, run in (
                ("first import", first),
                ("re-import", again),
                ("hand-tuned first load", hand["first"]),
                ("hand-tuned reload", hand["reload"]),
                ("dlt first load", peer["first"]),
                ("dlt re-load", peer["reload"]),
            )
            if "machine_busy" in run
        ),
        _server_cpu_line(
            ("first import", first),
            ("re-import", again),
            ("hand-tuned first load", hand["first"]),
            ("dlt first load", peer["first"]),
            ("dlt re-load", peer["reload"]),
        ),
        f"Prefect orchestration: {first['orchestration_share']:.1%} of the flow's wall time "
        f"({first['flow_seconds'] - first['chunk_work_seconds']:.1f} s of "
        f"{first['flow_seconds']:.1f} s outside chunk work)",
        f"same rows per table as the hand-tuned load: {figures['same_table_rows']}, "
        f"as dlt's: {figures['dlt_same_table_rows']}",
        _owed_line(file, first.get("table_rows") or {}),
    ]
    workers = figures.get("workers")
    if workers:
        one, two = workers["one_worker"], workers["two_workers"]
        lines.append(
            f"two {workers['rows_per_upload']:,}-row uploads: one worker {one['seconds']:.1f} s, "
            f"two workers at once {two['seconds']:.1f} s (speed-up {workers['speedup']:.2f}x); "
            f"same tables: {workers['same_tables']}, all completed: {workers['all_completed']}"
        )
    return lines


def _server_cpu_line(*runs: tuple[str, dict[str, Any]]) -> str:
    """PostgreSQL's CPU per load, where the server is local: what the tables' work costs."""
    shown = [
        f"{what} {run['postgres_cpu_seconds']:.1f} s"
        for what, run in runs
        if run.get("postgres_cpu_seconds") is not None
    ]
    if not shown:
        return "PostgreSQL CPU: not measured (the server is not on this machine)"
    return "PostgreSQL CPU (the loader's connections and autovacuum): " + ", ".join(shown)


def _owed_line(file: dict[str, Any], tables: dict[str, int]) -> str:
    """Products and inventory lines stored against what the synthetic file holds."""
    stored = (tables.get("product"), tables.get("inventory"))
    expected = (file.get("products"), file.get("inventory_lines"))
    return (
        f"products {stored[0]} of the file's {expected[0]}, inventory lines {stored[1]} of "
        f"{expected[1]}: {'all stored' if stored == expected else 'MISSING SOME'}"
    )


def side_by_side(runs: list[dict[str, Any]]) -> list[str]:
    """One line per size, smallest first: how throughput and its costs grow with the file."""
    lines = [
        f"{'rows':>10} {'pipeline/s':>11} {'hand-tuned/s':>13} {'ratio':>6} {'x naive':>8} "
        f"{'re-import':>10} {'uncached':>9} {'peak RSS':>9} {'Prefect':>8} {'dlt/s':>8} "
        f"{'x dlt':>6}"
    ]
    for figures in sorted(runs, key=lambda f: int(f["file"]["rows"])):
        first = figures["pipeline"]["first"]
        ratios = figures["ratios"]
        naive = ratios.get("pipeline_vs_naive_orm")
        uncached = ratios.get("reimport_uncached_speedup")
        peer = figures.get("dlt", {}).get("first", {}).get("rows_per_second")
        vs_dlt = ratios.get("pipeline_vs_dlt")
        lines.append(
            f"{figures['file']['rows']:>10,} {first['rows_per_second']:>11,.0f} "
            f"{figures['hand_tuned']['first']['rows_per_second']:>13,.0f} "
            f"{ratios['pipeline_vs_hand_tuned']:>6.2f} "
            f"{(f'{naive:.0f}x' if naive else '-'):>8} {ratios['reimport_speedup']:>9.2f}x "
            f"{(f'{uncached:.2f}x' if uncached else '-'):>9} "
            f"{first['peak_rss_mb']:>6.0f} MB {first['orchestration_share']:>8.1%} "
            f"{(f'{peer:,.0f}' if peer else '-'):>8} "
            f"{(f'{vs_dlt:.2f}' if vs_dlt else '-'):>6}"
        )
    return lines


def _child(argv: list[str]) -> None:
    path, chunk_size, out = Path(argv[0]), int(argv[1]), Path(argv[2])
    out.write_text(json.dumps(measure_pipeline(path, chunk_size)))


if __name__ == "__main__":
    _child(sys.argv[1:])
