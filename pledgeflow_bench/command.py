"""`pledgeflow bench`, the command the CLI finds through the `pledgeflow.commands` entry point."""

from __future__ import annotations

import json
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

import typer

from pledgeflow.parameters import CHUNK_SIZE_MAX, CHUNK_SIZE_MIN
from pledgeflow.settings import get_settings

# What the `bench` extra installs beyond pledgeflow's own dependencies (the dlt peer).
EXTRA_MODULES = ("dlt", "pyarrow", "psycopg2")
MISSING = "error: pledgeflow bench needs the bench extra: pip install -e '.[bench]' in a checkout"


def bench(
    rows: Annotated[
        list[int],
        typer.Option(
            min=1,
            help="Rows of the synthetic export to import; repeat it (--rows 10000 --rows "
            "100000) to measure several sizes and print them side by side.",
        ),
    ],
    json_file: Annotated[
        Path | None,
        typer.Option(
            "--json",
            help="Also write the figures to this JSON file (a list of them for several sizes).",
        ),
    ] = None,
    chunk_size: Annotated[
        int | None,
        typer.Option(
            min=CHUNK_SIZE_MIN,
            max=CHUNK_SIZE_MAX,
            help="Rows per chunk, 100 to 100,000 (default from settings).",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Chunk tasks at once (default PLEDGEFLOW_TASK_CONCURRENCY)."),
    ] = None,
    naive_rows: Annotated[
        int, typer.Option(min=0, help="Rows the naive ORM baseline loads (0 skips it).")
    ] = 10_000,
    workers_rows: Annotated[
        int,
        typer.Option(
            min=0,
            help="Rows of each of the two uploads that one Prefect worker, then two at once, "
            "process (0 skips it).",
        ),
    ] = 100_000,
    server: Annotated[
        str | None,
        typer.Option(
            help="PostgreSQL server URL (any database on it) where the benchmark creates and "
            "drops its databases; default: the server of PLEDGEFLOW_DATABASE_URL, or "
            "postgres@127.0.0.1:5432."
        ),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(
            help="Redis the imports use for results, locks and the row cache, as in production; "
            "default: PLEDGEFLOW_REDIS_URL, or 127.0.0.1:6379."
        ),
    ] = None,
    no_redis: Annotated[
        bool,
        typer.Option(
            "--no-redis",
            help="Run the imports without Redis, as `pledgeflow import` can (no row cache, so one "
            "re-import); not with --burst.",
        ),
    ] = False,
    burst: Annotated[
        list[int] | None,
        typer.Option(
            min=1,
            help="Burst mode: post this many web-app uploads of --rows rows to the webhook at "
            "once and time their drain (repeat it for several sizes).",
        ),
    ] = None,
    burst_workers: Annotated[
        int, typer.Option(min=1, help="Burst mode: process workers on the pool.")
    ] = 1,
    worker_limit: Annotated[
        int | None, typer.Option(min=1, help="Burst mode: each worker's --limit.")
    ] = None,
    reserve: Annotated[
        int, typer.Option(min=0, help="Burst mode: connections `limits apply` keeps free.")
    ] = 40,
    webhook_latency: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Latency mode: after a warm-up, post this many uploads of --rows rows to the "
            "webhook one at a time and time each from the 202 to its run's COMPLETED.",
        ),
    ] = None,
) -> None:
    """Benchmark the import pipeline against dlt, a hand-tuned and a naive ORM baseline, or
    (with --burst) a burst of uploads through the webhook, or (with --webhook-latency) small
    uploads from the webhook to COMPLETED."""
    missing = [name for name in EXTRA_MODULES if find_spec(name) is None]
    if missing:
        typer.echo(f"{MISSING} ({', '.join(missing)} missing)", err=True)
        raise typer.Exit(2)
    from sqlalchemy.engine import make_url

    from pledgeflow_bench.bench import (
        DEFAULT_REDIS,
        DEFAULT_SERVER,
        BenchConfig,
        report,
        run_bench,
        side_by_side,
    )

    settings = get_settings()
    configured = make_url(settings.database_url.get_secret_value())
    if server is None:
        server = (
            configured.set(database="postgres").render_as_string(hide_password=False)
            if configured.get_backend_name() == "postgresql"
            else DEFAULT_SERVER
        )
    redis = redis_url or (
        settings.redis_url.get_secret_value() if settings.redis_url else DEFAULT_REDIS
    )
    if webhook_latency:
        from pledgeflow_bench.latency import latency_report, run_latency_bench

        latency = run_latency_bench(
            webhook_latency, rows[0], chunk_size or settings.chunk_size, server, redis
        )
        for line in latency_report(latency):
            typer.echo(line)
        if json_file is not None:
            json_file.write_text(json.dumps(latency, indent=2) + "\n")
        return
    if burst:
        from pledgeflow_bench.burst import burst_report, run_burst_bench

        results = run_burst_bench(
            burst,
            rows[0],
            chunk_size or settings.chunk_size,
            server,
            redis,
            workers=burst_workers,
            worker_limit=worker_limit,
            reserve=reserve,
        )
        for line in burst_report(results):
            typer.echo(line)
        if json_file is not None:
            json_file.write_text(json.dumps(results, indent=2) + "\n")
        return
    tasks = concurrency or settings.task_concurrency
    runs = []
    for number, size in enumerate(rows, 1):
        config = BenchConfig(
            rows=size,
            chunk_size=chunk_size or settings.chunk_size,
            task_concurrency=tasks,
            pool_size=settings.db_pool_size or tasks + 1,
            naive_rows=naive_rows,
            server_url=server,
            # Two workers on two uploads is one measurement, whatever the sizes: after the last.
            workers_rows=workers_rows if number == len(rows) else 0,
            redis_url=None if no_redis else redis,
        )
        figures = run_bench(config)
        for line in report(figures):
            typer.echo(line)
        runs.append(figures)
    if len(runs) > 1:
        for line in side_by_side(runs):
            typer.echo(line)
    if json_file is not None:
        json_file.write_text(json.dumps(runs if len(runs) > 1 else runs[0], indent=2) + "\n")
