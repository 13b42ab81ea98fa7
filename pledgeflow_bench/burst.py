"""`pledgeflow bench --burst N`: N web-app uploads posted to the webhook at once, drained.

On a fresh database and a temporary Prefect server of the given PostgreSQL server, with the
limits `pledgeflow limits apply` sizes from its max_connections: the time to deliver the
webhooks and to drain every upload, their outcome, peak connections (server-wide, and
pledgeflow's own) and the workers' peak memory. The tables are then compared, row for row, with
the same uploads imported one after the other without Prefect.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text

from pledgeflow_bench.bench import _database, _empty, _migrate, _prefect_api, _redis_keys
from pledgeflow_bench.bursts import (
    Peaks,
    answer_figures,
    burst_stack,
    store_web_app_upload,
    write_exports,
)
from pledgeflow_bench.workers import content_digests

SHOPS = 10
# A run queued by a deployment limit asks again after this long (Prefect's default is 30 s);
# the README's production settings use the same.
SLOT_WAIT_SECONDS = "5"


def _locked_server_env(auth: str) -> dict[str, str]:
    """The README's production server settings: basic auth and CSRF protection on, queued
    runs asking again after 5 s."""
    return {
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": SLOT_WAIT_SECONDS,
        "PREFECT_SERVER_API_AUTH_STRING": auth,
        "PREFECT_SERVER_API_CSRF_PROTECTION_ENABLED": "true",
    }


@contextmanager
def bench_services(
    name: str, server_url: str, redis_url: str, work: Path, chunk_size: int
) -> Iterator[tuple[Engine, str, str, dict[str, str]]]:
    """A migrated database, Redis keys and a locked Prefect server of the run's own, named
    `name`; yields the database's engine and URL, the Prefect API's URL and the environment of
    the processes the run starts (workers, webhook), and removes them all afterwards."""
    auth = f"bench:{secrets.token_urlsafe(24)}"
    with (
        _redis_keys(redis_url, name),
        _database(server_url, name) as database_url,
        _prefect_api(
            server_url,
            f"{name}_prefect",
            work,
            reuse_configured=False,
            server_env=_locked_server_env(auth),
        ) as api,
    ):
        engine = create_engine(database_url, connect_args={"application_name": "bench"})
        _migrate(engine)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PLEDGEFLOW_"))}
        env |= {
            "PLEDGEFLOW_REDIS_URL": redis_url,
            "PLEDGEFLOW_REDIS_KEY_PREFIX": name,
            "PLEDGEFLOW_CHUNK_SIZE": str(chunk_size),
            "PREFECT_HOME": str(work / "prefect-client-home"),
            "PREFECT_API_AUTH_STRING": auth,
        }
        try:
            yield engine, database_url, api, env
        finally:
            engine.dispose()


def _reference(engine: Engine, files: list[Path], owners: list[tuple[str, str]], chunk: int) -> Any:
    """The tables after importing the uploads one by one, in order, without Prefect."""
    from pledgeflow.chunks import process_chunk
    from pledgeflow.status import local_owner
    from pledgeflow.uploads import aggregate_upload, start_upload

    _empty(engine)
    for path, (shop, project) in zip(files, owners, strict=True):
        upload_id = store_web_app_upload(engine, path, shop, project, chunk)
        for chunk_id in start_upload(upload_id).chunk_ids:
            process_chunk(chunk_id, owner=local_owner())
        aggregate_upload(upload_id)
    return content_digests(engine)


def run_burst_bench(
    sizes: list[int],
    rows: int,
    chunk_size: int,
    server_url: str,
    redis_url: str,
    *,
    workers: int = 1,
    worker_limit: int | None = None,
    reserve: int = 40,
    verify: bool = True,
) -> list[dict[str, Any]]:
    """Measure one burst of each size in turn on the same stack; return one figure set each."""
    name = f"pledgeflow_burst_{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="pledgeflow-burst-"))
    results = []
    try:
        files = write_exports(work / "exports", max(sizes), rows)
        owners = [(f"shop{n % SHOPS}.example.com", f"Campaign {n}") for n in range(len(files))]
        with bench_services(name, server_url, redis_url, work, chunk_size) as (
            engine,
            database_url,
            api,
            env,
        ):
            with engine.connect() as conn:
                max_connections = int(conn.execute(text("SHOW max_connections")).scalar_one())
            with burst_stack(
                api,
                database_url,
                env,
                work,
                workers=workers,
                worker_limit=worker_limit,
                reserve=reserve,
                prefect_database=[f"{name}_prefect"],
            ) as stack:
                for size in sizes:
                    _empty(engine)
                    stack.peaks = Peaks()
                    upload_ids = [
                        store_web_app_upload(engine, path, shop, project, chunk_size)
                        for path, (shop, project) in zip(files[:size], owners, strict=False)
                    ]
                    load_before = round(os.getloadavg()[0], 1)
                    began = time.perf_counter()
                    runs = stack.deliver(upload_ids)
                    delivered = time.perf_counter() - began
                    uploads, states = stack.wait_drained(engine, runs, timeout=600 + size * 30)
                    drained = time.perf_counter() - began
                    figures: dict[str, Any] = {
                        "uploads": size,
                        "rows_per_upload": rows,
                        "workers": workers,
                        "worker_limit": worker_limit,
                        "max_connections": max_connections,
                        "limits": {k: v for k, v in stack.limits.items() if k != "applied"},
                        "deliver_seconds": round(delivered, 2),
                        **answer_figures(stack.answer_seconds),
                        "load_before": load_before,
                        "drain_seconds": round(drained, 1),
                        "rows_per_second": round(size * rows / drained),
                        "upload_states": dict(Counter(uploads.values())),
                        "run_states": dict(Counter(states.values())),
                        "peaks": stack.peaks.as_dict(),
                    }
                    figures["failures"] = _failures(engine)
                    if verify:
                        burst_tables = content_digests(engine)
                        figures["tables_exact"] = burst_tables == _reference_in(
                            database_url, files[:size], owners[:size], chunk_size
                        )
                    results.append(figures)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def _failures(engine: Engine) -> list[dict[str, Any]]:
    """The recorded cause of each FAILED upload and chunk (codes and messages, no row data)."""
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT u.id, u.errors -> 'error' ->> 'code' AS upload_code, c.chunk_index, "
                "c.errors -> 'error' ->> 'code' AS code, c.errors -> 'error' ->> 'message' AS msg "
                "FROM csv_upload u LEFT JOIN csv_upload_chunk c ON c.upload_id = u.id "
                "AND c.status = 'FAILED' WHERE u.status = 'FAILED' ORDER BY u.id"
            )
        ).all()
    return [dict(r._mapping) for r in rows]


def _reference_in(
    database_url: str, files: list[Path], owners: list[tuple[str, str]], chunk: int
) -> Any:
    """Run the reference import in this process against the bench database (emptied first)."""
    from pledgeflow.database import _engine_for
    from pledgeflow.settings import get_settings

    previous = os.environ.get("PLEDGEFLOW_DATABASE_URL")
    os.environ["PLEDGEFLOW_DATABASE_URL"] = database_url
    get_settings.cache_clear()
    _engine_for.cache_clear()
    engine = create_engine(database_url)
    try:
        return _reference(engine, files, owners, chunk)
    finally:
        engine.dispose()
        if previous is None:
            os.environ.pop("PLEDGEFLOW_DATABASE_URL", None)
        else:
            os.environ["PLEDGEFLOW_DATABASE_URL"] = previous
        get_settings.cache_clear()
        _engine_for.cache_clear()


def burst_report(results: list[dict[str, Any]]) -> list[str]:
    """One line per burst size, for the terminal."""
    lines = [
        "uploads | rows each | deliver s (answer median / max) | drain s | rows/s | outcome | "
        "peak conns (server / pledgeflow) | peak flow-run procs | peak chunk writers (slots) of "
        "limit | peak RSS MiB, workers together (each) | load mean / max | tables exact"
    ]
    for f in results:
        p = f["peaks"]
        lines.append(
            f"{f['uploads']} | {f['rows_per_upload']} | {f['deliver_seconds']} "
            f"({f['answer_median_seconds']} / {f['answer_max_seconds']}) | "
            f"{f['drain_seconds']} | {f['rows_per_second']} | {f['upload_states']} | "
            f"{p['connections']} / {p['pledgeflow_connections']} of {f['max_connections']} | "
            f"{p['flow_run_processes']} | {p['chunk_writers']} ({p['write_slots']}) of "
            f"{f['limits'].get('chunk_writes')} | "
            f"{p['worker_rss_mib']} ({p['worker_rss_mib_each']}) | "
            f"{p['load_mean']} / {p['load_max']} | {f.get('tables_exact')}"
        )
    return lines
