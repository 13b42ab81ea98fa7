"""The benchmark's parts: the synthetic export, the two baselines, and the command itself.

Timings are the benchmark's business, not the tests'. These check that what it measures is
comparable: the export is what it claims, and both baselines leave the same business content
as the pipeline.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import uuid
from pathlib import Path

import pytest
import redis
from prefect.settings import PREFECT_API_URL
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from pledgeflow_bench.baselines import load_hand_tuned, load_naive_orm, prepare_target
from pledgeflow_bench.exports import write_kickstarter_export
from schemas.platforms import resolve_layout
from tests.conftest import ADMIN_URL, DATA_TABLES, REDIS_URL
from tests.helpers import import_path, run_command, table_contents

SHOP, PROJECT = "bench.example.com", "Benchmark Campaign"


def test_synthetic_export_is_a_2020_kickstarter_report_with_repeats_and_bad_rows(
    tmp_path: Path,
) -> None:
    summary = write_kickstarter_export(tmp_path / "export.csv", 2000, bad_share=0.01)

    with summary.path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    layout = resolve_layout(tuple(rows[0]))
    assert (layout.platform, layout.variant) == ("kickstarter", "2020+")
    assert [name for _, _, name in layout.addon_columns] == [
        "Dice Tower",
        "Sleeves",
        "Playmat",
        "Coins",
    ]
    assert [name for _, name in layout.item_columns] == [
        "Dice Tower",
        "Wooden Insert",
        "Art Book: Frost & Fire",
    ]
    data = rows[1:]
    assert len(data) == summary.rows == 2000
    assert all(len(r) == len(rows[0]) for r in data)
    assert len({r[6] for r in data}) > 20  # reward tiers
    assert 5 <= summary.bad_rows <= 40
    details: dict[str, set[tuple[str, str, str]]] = {}
    for r in data:
        if r[3].strip():
            details.setdefault(r[3].strip().lower(), set()).add((r[1], r[2], r[4]))
    assert 2000 - len(details) - summary.bad_rows == pytest.approx(0.05 * 2000, abs=40)
    # A returning backer brings the same UID, name and country every time.
    assert all(len(seen) == 1 for seen in details.values())
    # Written as a stream: a second call gives the same file.
    again = write_kickstarter_export(tmp_path / "again.csv", 2000, bad_share=0.01)
    assert again.path.read_bytes() == summary.path.read_bytes()


@pytest.mark.usefixtures("prefect_harness")
def test_baselines_write_what_the_pipeline_writes(db: Engine, tmp_path: Path) -> None:
    export = write_kickstarter_export(tmp_path / "export.csv", 400, bad_share=0.02)

    result = import_path(export.path, chunk_size=150, shop=SHOP, project=PROJECT)
    pipeline = table_contents(db)
    assert result.rejected_rows == export.bad_rows > 0
    # Every product and inventory line the file holds, `Art Book: Frost & Fire` among them.
    assert (len(pipeline["product"]), len(pipeline["inventory"])) == (
        export.products,
        export.inventory_lines,
    )
    assert any(line[1] == "Art Book: Frost & Fire" for line in pipeline["inventory"])

    contents = {}
    for name in ("hand-tuned", "naive ORM"):
        with db.begin() as conn:
            conn.execute(text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))
        target = prepare_target(db, SHOP, PROJECT, export.path.name)
        if name == "hand-tuned":
            dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
            written = load_hand_tuned(dsn, export.path, target)
        else:
            written = load_naive_orm(db, export.path, target, rows=400)
        assert written == result.imported_rows, name
        contents[name] = table_contents(db)

    for name, tables in contents.items():
        for table in pipeline:
            assert tables[table] == pipeline[table], (name, table)


# The same business content, read from pledgeflow's tables and from dlt's (natural keys only).
PEER_CONTENT = {
    "backer": ("SELECT shop, email, name, phone, country, external_id FROM {s}backer", None),
    "product": ("SELECT name, kind, external_id, price, currency FROM {s}product", None),
    "pledge": (
        """SELECT pl.pledge_id, b.email, amount, shipping_amount, pl.currency, status, pledged_at
           FROM pledge pl JOIN backer b ON b.id = pl.backer_id""",
        """SELECT pledge_id, backer_email, amount, shipping_amount, currency, status, pledged_at
           FROM {s}pledge""",
    ),
    "survey": (
        """SELECT pl.pledge_id, responded_at, shipping_name, shipping_city, shipping_phone
           FROM survey s JOIN pledge pl ON pl.id = s.pledge_id""",
        """SELECT pledge_id, responded_at, shipping_name, shipping_city, shipping_phone
           FROM {s}survey""",
    ),
    "inventory": (
        """SELECT pl.pledge_id, pr.name, quantity FROM inventory i
           JOIN survey s ON s.id = i.survey_id JOIN pledge pl ON pl.id = s.pledge_id
           JOIN product pr ON pr.id = i.product_id""",
        """SELECT i.pledge_id, pr.name, quantity FROM {s}inventory i JOIN {s}product pr
           ON (pr.kind, pr.product_key) = (i.kind, i.product_key)""",
    ),
}


def _rows(engine: Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return sorted((tuple(r) for r in conn.execute(text(sql))), key=repr)


@pytest.mark.usefixtures("prefect_harness")
def test_dlt_peer_loads_what_the_pipeline_writes_and_reloads_it_unchanged(
    db: Engine, tmp_path: Path
) -> None:
    export = write_kickstarter_export(tmp_path / "export.csv", 400, bad_share=0.02)
    result = import_path(export.path, chunk_size=150, shop=SHOP, project=PROJECT)
    assert result.rejected_rows == export.bad_rows > 0
    dataset = f"dlt_test_{uuid.uuid4().hex[:8]}"
    dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PLEDGEFLOW_"))}

    try:
        loads = []
        for label in ("first", "reload"):
            out = tmp_path / f"dlt-{label}.json"
            done = run_command(
                [
                    *(sys.executable, "-P", "-m", "pledgeflow_bench.dlt_peer", str(export.path)),
                    *(dsn, dataset, str(tmp_path), str(out), SHOP, PROJECT),
                ],
                env=env | {"RUNTIME__LOG_LEVEL": "ERROR"},
                cwd=tmp_path,
                timeout=300,
            )
            assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
            loads.append(json.loads(out.read_text()))
            for table, (ours, theirs) in PEER_CONTENT.items():
                expected = _rows(db, ours.format(s=""))
                assert len(expected) > 0, table
                assert _rows(db, (theirs or ours).format(s=f"{dataset}.")) == expected, (
                    label,
                    table,
                )
        assert all(load["seconds"] > 0 and load["peak_rss_mb"] > 0 for load in loads)
        assert loads[0]["dlt_version"].startswith("1.")
    finally:
        with db.begin() as conn:
            for schema in (dataset, f"{dataset}_staging"):
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _bench_databases() -> set[str]:
    engine = create_engine(ADMIN_URL)
    try:
        with engine.connect() as conn:
            return set(
                conn.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE 'pledgeflow_bench_%'")
                ).scalars()
            )
    finally:
        engine.dispose()


def _bench_keys() -> set[bytes]:
    """Redis keys of benchmark runs (each run's prefix is its database's name)."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        return set(client.scan_iter(match="pledgeflow_bench_*"))
    finally:
        client.close()


@pytest.mark.slow
@pytest.mark.timeout(900)  # a Prefect server and ten measured processes on a busy machine
@pytest.mark.usefixtures("prefect_harness")
def test_bench_command_measures_every_path_and_leaves_no_database(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PLEDGEFLOW_"))}
    # The pipeline's imports report to the worker's running harness server (the bench uses a
    # configured PREFECT_API_URL), sparing a server start on a fresh database; the workers
    # measurement still starts and drops a temporary server of its own.
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    server = make_url(ADMIN_URL).render_as_string(hide_password=False)

    done = run_command(
        [
            *(sys.executable, "-P", "-m", "pledgeflow", "bench", "--rows", "600"),
            *("--chunk-size", "250", "--naive-rows", "50", "--workers-rows", "200"),
            *("--server", server, "--redis-url", REDIS_URL, "--json", str(out)),
        ],
        env=env,
        cwd=tmp_path,
        timeout=840,
    )

    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    figures = json.loads(out.read_text())
    first, again = figures["pipeline"]["first"], figures["pipeline"]["reimport"]
    assert (first["status"], first["chunks"]) == ("COMPLETED", 3)
    assert first["imported_rows"] + first["rejected_rows"] == 600
    assert again["all_unchanged"] is True
    # As configured by default, a re-import completes every chunk as unchanged without mapping or
    # writing (chunk_skip), before the row cache is asked; so does the one with the cache off.
    uncached = figures["pipeline"]["reimport_uncached"]
    assert (first["chunks_skipped"], first["chunks_from_cache"]) == (0, 0)
    assert (again["chunks_skipped"], again["chunks_from_cache"]) == (3, 0)
    assert (uncached["chunks_skipped"], uncached["chunks_from_cache"]) == (3, 0)
    assert uncached["all_unchanged"] is True
    assert figures["same_table_rows"] is True
    assert figures["naive_orm"]["rows"] == 50
    assert 0 <= first["orchestration_share"] <= 1
    assert first["peak_rss_mb"] > 0
    hand = figures["hand_tuned"]
    for run in (first, again, hand["first"], hand["reload"], *figures["dlt"].values()):
        assert 0 < run["machine_busy"] <= 1
        # The server is on this machine: its CPU for each load is measured too.
        assert run["postgres_cpu_seconds"] >= 0
    assert first["postgres_cpu_seconds"] > 0 and figures["dlt"]["first"]["postgres_cpu_seconds"] > 0
    assert "PostgreSQL CPU (the loader's connections and autovacuum): first import" in done.stdout
    assert set(figures["ratios"]) == {
        "pipeline_vs_hand_tuned",
        "pipeline_vs_naive_orm",
        "pipeline_vs_dlt",
        "reimport_vs_dlt_reload",
        "hand_tuned_vs_dlt",
        "reimport_speedup",
        "reimport_uncached_speedup",
        "hand_tuned_reload_speedup",
        "dlt_reload_speedup",
    }
    # dlt, the peer, loaded the same file into as many rows per table, twice.
    peer = figures["dlt"]
    assert figures["dlt_same_table_rows"] is True
    assert peer["first"]["table_rows"] == first["table_rows"]
    assert peer["first"]["rows_per_second"] > 0 and peer["reload"]["rows_per_second"] > 0
    assert "dlt, first load" in done.stdout
    workers = figures["workers"]
    assert workers["all_completed"] is True
    # Both measurements are first imports: none of their chunks comes from the row cache.
    assert workers["one_worker"]["chunks_from_cache"] == 0
    assert workers["two_workers"]["chunks_from_cache"] == 0
    assert workers["same_tables"] is True
    # Both uploads landed: each file's pledges, in two shops, under one worker and under two.
    pledges, _ = workers["one_worker"]["tables"]["pledge"]
    assert 2 * 190 <= pledges <= 2 * 200
    assert workers["speedup"] > 0
    assert "rows/s" in done.stdout
    assert "two workers at once" in done.stdout
    # Nothing of this run is left (another bench on the shared servers may come and go).
    run = figures["run"]
    assert run.startswith("pledgeflow_bench_")
    assert {d for d in _bench_databases() if d.startswith(run)} == set()
    assert {k for k in _bench_keys() if k.startswith(run.encode())} == set()


def _figures(rows: int, pipeline: float, hand: float, reimport: float) -> dict[str, object]:
    return {
        "file": {"rows": rows},
        "pipeline": {
            "first": {"rows_per_second": pipeline, "peak_rss_mb": 300.0, "orchestration_share": 0.1}
        },
        "hand_tuned": {"first": {"rows_per_second": hand}},
        "ratios": {
            "pipeline_vs_hand_tuned": round(pipeline / hand, 3),
            "pipeline_vs_naive_orm": 50.0,
            "reimport_speedup": reimport,
            "reimport_uncached_speedup": reimport - 0.5,
        },
    }


def test_several_sizes_print_side_by_side_smallest_first() -> None:
    from pledgeflow_bench.bench import side_by_side

    lines = side_by_side(
        [_figures(1_000_000, 7_500, 7_400, 1.5), _figures(10_000, 2_500, 8_500, 1.6)]
    )

    assert len(lines) == 3
    small, large = (line.split() for line in lines[1:])
    assert small[:4] == ["10,000", "2,500", "8,500", "0.29"]
    assert large[:4] == ["1,000,000", "7,500", "7,400", "1.01"]
    assert small[5] == "1.60x" and large[5] == "1.50x"
    assert small[6] == "1.10x" and large[6] == "1.00x"
