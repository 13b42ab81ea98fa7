"""A burst of web-app uploads through the webhook, on a PostgreSQL with max_connections 40:
every upload completes with exact tables, within the connection budget and the run limits,
and one shop's burst leaves room for another shop's upload."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from pledgeflow_bench.bursts import BurstStack, burst_stack, store_web_app_upload, write_exports
from pledgeflow_bench.workers import content_digests
from tests.conftest import ADMIN_URL, REDIS_URL, RUN_ID, use_database
from tests.helpers import run_plain
from tests.services import BIN, OwnPostgres, free_port, process, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

MAX_CONNECTIONS = 40
RESERVE = 16  # what the web app and headroom would keep; the plan gives 5 upload runs
BURST = 15
BIG_UPLOADS = 6  # the large shop's burst in the fairness test


@dataclass
class Burst:
    """The running stack and the burst database it imports into."""

    stack: BurstStack
    engine: Engine
    admin_url: str
    work: Path


def _database(admin_url: str, name: str) -> str:
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    use_database(url)
    from pledgeflow.migrations.runner import upgrade

    upgrade()
    from pledgeflow.database import get_engine

    get_engine().dispose()  # the test's own idle connections would count as pledgeflow's
    return url


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Burst]:
    """PostgreSQL of its own (max_connections 40) for the data; a Prefect server on the shared
    PostgreSQL; the deployments, limits sized from 40, one worker and the webhook."""
    work = tmp_path_factory.mktemp("burst")
    server_db = f"pledgeflow_test_{RUN_ID}_burst_prefect"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{server_db}"'))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PLEDGEFLOW_"))}
    base.update(
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    server_env = {
        **base,
        "PREFECT_API_DATABASE_CONNECTION_URL": make_url(ADMIN_URL)
        .set(drivername="postgresql+asyncpg", database=server_db)
        .render_as_string(hide_password=False),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "200",
        "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_READ_BATCH_SIZE": "200",
        # The README's production setting: a run queued by a deployment limit asks again soon.
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "2",
        # No runs from deployment schedules: the sweep's scheduled run is a flow-run process
        # beside the burst's (its CPU, and a process the run limits do not cover).
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    client_env = {
        **base,
        "PLEDGEFLOW_REDIS_URL": REDIS_URL,
        "PLEDGEFLOW_REDIS_KEY_PREFIX": f"pledgeflow-test-{RUN_ID}-burst",
        "PLEDGEFLOW_WEBHOOK_SECRET": "burst-" + uuid.uuid4().hex,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT_WORKER_PREFETCH_SECONDS": "2",
    }
    pg = OwnPostgres(settings={"max_connections": str(MAX_CONNECTIONS)})
    try:
        pg.start()
        pg_admin = pg.admin_url
        with (
            process(
                [str(BIN / "prefect"), "server", "start", "--port", str(port)],
                server_env,
                work / "server.log",
            ),
        ):
            wait_until(
                lambda: httpx.get(f"{api}/health", timeout=2).status_code == 200,
                120,
                "the Prefect server",
                log=work / "server.log",
            )
            url = _database(pg_admin, "pledgeflow")
            engine = create_engine(url, connect_args={"application_name": "burst-test"})
            try:
                with burst_stack(api, url, client_env, work, reserve=RESERVE) as stack:
                    yield Burst(stack=stack, engine=engine, admin_url=pg_admin, work=work)
            finally:
                engine.dispose()
                use_database(pg_url)
    finally:
        pg.destroy()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{server_db}" WITH (FORCE)'))
        admin.dispose()


def reference_tables(
    burst: Burst, files: list[Path], owners: list[tuple[str, str]]
) -> dict[str, tuple[int, str]]:
    """The five tables after importing the same uploads one by one, in upload order, into a
    fresh database of the same server, without Prefect."""
    url = _database(burst.admin_url, f"reference_{uuid.uuid4().hex[:8]}")
    engine = create_engine(url)
    try:
        for path, (shop, project) in zip(files, owners, strict=True):
            upload_id = store_web_app_upload(engine, path, shop, project, chunk_size=50)
            assert run_plain(upload_id).status == "COMPLETED"
        return content_digests(engine)
    finally:
        engine.dispose()


def test_a_burst_of_three_times_the_run_limit_completes_exactly_within_the_connection_budget(
    burst: Burst,
) -> None:
    stack, plan = burst.stack, burst.stack.limits
    assert (plan["upload_runs"], plan["peak_connections"]) == (5, 24)
    deployment = httpx.get(
        f"{stack.api}/deployments/name/process-upload/process-upload", timeout=10
    ).json()
    assert deployment["global_concurrency_limit"]["limit"] == 5
    assert deployment["concurrency_options"]["collision_strategy"] == "ENQUEUE"
    writes = httpx.get(f"{stack.api}/v2/concurrency_limits/pledgeflow-db-writes", timeout=10)
    assert writes.json()["limit"] == plan["chunk_writes"] == 14
    # Fifteen uploads, three times the five runs the plan allows at once (`pledgeflow bench
    # --burst` measures a hundred): five shops with three uploads each, so shops' backers and
    # products are shared.
    files = write_exports(burst.work / "exports", BURST, rows=100)
    owners = [(f"shop{n % 5}.example.com", f"Campaign {n}") for n in range(BURST)]
    upload_ids = [
        store_web_app_upload(burst.engine, path, shop, project, chunk_size=50)
        for path, (shop, project) in zip(files, owners, strict=True)
    ]

    began = time.monotonic()
    runs = stack.deliver(upload_ids)
    delivered = time.monotonic() - began
    uploads, states = stack.wait_drained(burst.engine, runs, timeout=780)
    drained = time.monotonic() - began
    print(f"\nBURST {BURST}: delivered {delivered:.1f} s, drained {drained:.1f} s, {stack.peaks}")

    assert delivered < 30, f"{BURST} webhooks took {delivered:.1f} s"
    assert set(uploads.values()) == {"COMPLETED"}, uploads
    assert set(states.values()) == {"COMPLETED"}, states
    with burst.engine.connect() as conn:
        unfinished = conn.execute(
            text("SELECT count(*) FROM csv_upload_chunk WHERE status <> 'COMPLETED'")
        ).scalar_one()
    assert unfinished == 0
    peaks = stack.peaks
    assert peaks.samples > 10
    # Every pledgeflow process (flow runs and the webhook) stayed inside its pool, together
    # inside the plan, and the server kept the reserve for everyone else.
    assert 0 < peaks.pledgeflow_connections <= plan["peak_connections"]
    assert peaks.connections <= MAX_CONNECTIONS - 10
    assert 0 < peaks.flow_run_processes <= plan["upload_runs"]
    assert content_digests(burst.engine) == reference_tables(burst, files, owners)


@contextmanager
def held_claims(engine: Engine, upload_ids: list[int]) -> Iterator[Callable[[], None]]:
    """While open, a chunk of these uploads is not claimed (moved to PROCESSING) until the
    `release()` it yields is called: a trigger in the database waits on an advisory lock the
    test holds, in the claim's own transaction, before the run writes or locks any row. Their
    runs hold their run slots, idle, for as long as the test needs."""
    holder = engine.connect()
    holder.execute(text("SELECT pg_advisory_lock(4243, 1)"))
    holder.commit()
    ids = ", ".join(str(int(u)) for u in upload_ids)
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            holder.execute(text("SELECT pg_advisory_unlock(4243, 1)"))
            holder.commit()
            released = True

    with engine.begin() as conn:
        conn.execute(
            text(f"""
            CREATE FUNCTION test_held_claims() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.status = 'PROCESSING' AND NEW.upload_id IN ({ids}) THEN
                PERFORM pg_advisory_lock_shared(4243, 1);
                PERFORM pg_advisory_unlock_shared(4243, 1);
              END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER test_held_claims BEFORE UPDATE ON csv_upload_chunk
            FOR EACH ROW EXECUTE FUNCTION test_held_claims();
        """)
        )
    try:
        yield release
    finally:
        release()
        holder.close()
        with engine.begin() as conn:
            conn.execute(
                text(
                    "DROP TRIGGER test_held_claims ON csv_upload_chunk; "
                    "DROP FUNCTION test_held_claims();"
                )
            )


def test_a_small_shop_finishes_while_a_large_shops_burst_waits(burst: Burst) -> None:
    stack = burst.stack
    # The big shop's burst is still running when the small shop's upload is done, however fast
    # or slow the machine: the uploads its first sends to the bulk lane are held at their
    # chunks' claims (in the database) until the small one is done. Uploads of one chunk each
    # show it (what makes the burst wait is the hold, not the size of its files), and six of
    # them: its first in the deployment's lane, four filling the bulk lane, and one waiting
    # there, which the small shop's run goes ahead of.
    big_files = write_exports(burst.work / "fair-big", BIG_UPLOADS, rows=50)
    small_file = write_exports(burst.work / "fair-small", 1, rows=100)[0]
    big = [
        store_web_app_upload(burst.engine, path, "big.example.com", f"Big {n}", chunk_size=50)
        for n, path in enumerate(big_files)
    ]
    small = store_web_app_upload(burst.engine, small_file, "small.example.com", "Small", 50)

    # The trigger goes once the burst has drained (dropping it takes a lock on the chunks'
    # table, which the runs would wait on).
    with held_claims(burst.engine, big[1:]) as release:
        # The shop's first upload (under its fair share, in the deployment's lane) is sent
        # before the others, so that it is the one not held.
        big_runs = stack.deliver(big[:1]) | stack.deliver(big[1:])
        small_run = stack.deliver([small])

        def small_done() -> bool:
            return stack.upload_states(burst.engine, [small])[small] in ("COMPLETED", "FAILED")

        wait_until(small_done, 600, "the small shop's upload", interval=0.5)
        big_states = stack.upload_states(burst.engine, big)
        release()
        uploads, _ = stack.wait_drained(burst.engine, big_runs, timeout=600)
    waiting = sum(1 for s in big_states.values() if s not in ("COMPLETED", "FAILED"))
    assert stack.upload_states(burst.engine, [small])[small] == "COMPLETED"
    # Five runs at once, the big shop's past its first in the bulk lane (four at once): the
    # small shop's run took the slot the lane leaves, ahead of the rest of the burst.
    assert waiting >= BIG_UPLOADS - 1, big_states
    lanes = httpx.post(
        f"{stack.api}/flow_runs/filter",
        json={"flow_runs": {"id": {"any_": [*big_runs.values(), *small_run.values()]}}},
        timeout=30,
    ).json()
    queue_of = {r["id"]: r["work_queue_name"] for r in lanes}
    assert queue_of[small_run[small]] == "default"
    assert sorted(queue_of[big_runs[u]] for u in big) == ["bulk"] * (BIG_UPLOADS - 1) + ["default"]
    assert set(uploads.values()) == {"COMPLETED"}
