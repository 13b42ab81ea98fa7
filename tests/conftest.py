"""Session-wide real services: a fresh PostgreSQL database, Redis, and Prefect's test harness.

Under pytest-xdist each worker is its own session: its own database and Redis key prefix (both
named after RUN_ID, drawn per process) and its own Prefect harness.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import settings as hypothesis_settings
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
from prefect.testing.utilities import prefect_test_harness
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url

from pledgeflow.database import _engine_for, get_engine
from tests.helpers import configure, configured, reread_settings, slow_pledge_statements

# `make test` (what CI runs) loads this profile: the property tests draw the same examples on
# every run, so a red run is one anyone can reproduce. `make check` keeps exploring at random.
hypothesis_settings.register_profile("suite", derandomize=True)

ADMIN_URL = os.environ.get(
    "PLEDGEFLOW_TEST_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("PLEDGEFLOW_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
RUN_ID = uuid.uuid4().hex[:10]
# No telemetry from the Prefect servers the tests start, however pytest is run (`make` sets
# these too): its writes compete with the server's start on a busy machine.
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
DATA_TABLES = "inventory, survey, pledge, product, backer, csv_upload_chunk, csv_upload, project"
# The locked production stack (Prefect server with auth, worker, webhook), shared by the tests
# that use it, one after the other.
pytest_plugins = ["tests.stack"]


# A test using any of these reaches PostgreSQL, Redis or Prefect; `make check` runs the others.
SERVICE_FIXTURES = {"pg_url", "redis_client", "prefect_harness"}
# Under `pytest -n N --dist loadgroup`, the tests sharing an expensive fixture run on one worker,
# so that it is built once per group: the locked stack (a Prefect server on PostgreSQL, a worker
# and the webhook), and each module starting servers of its own. pytest-xdist's own
# `xdist_group` mark does not take effect under pytest 9.2 (xdist renames `item._nodeid`, which
# pytest no longer reports), so the scheduler below groups by module file instead.
# The stack's modules form two groups: one stack's tests, one after the other, took 6-7 minutes,
# the longest unit of the suite (measured again at load ~10: one group of all four took 12.5
# minutes of wall time, for ~30 s of CPU saved by one stack start fewer); two groups can run on
# two workers at once, each with a stack of its own (the stack's databases, role and key prefix
# are named after the worker's RUN_ID). On one worker, both groups share its one stack when they
# run one after the other (as with one worker).
STACK_GROUPS = {
    "test_deployments_e2e.py": "stack-webhook",
    "test_web_app_client.py": "stack-webhook",
    "test_locked_server.py": "stack-ui",
    "test_ui_runs.py": "stack-ui",
}
MODULE_GROUPS = {
    **STACK_GROUPS,
    "test_bursts.py": "bursts",
    "test_faults.py": "faults",
    "test_connection_starvation.py": "starvation",
}


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Under `--dist loadgroup`: one work unit per group of MODULE_GROUPS, and one per test
    for every other test, the largest units handed out first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModuleGroup(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped
        def _split_scope(self, nodeid: str) -> str:
            return MODULE_GROUPS.get(Path(nodeid.split("::", 1)[0]).name, nodeid)

    return ByModuleGroup(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `services` every test that needs PostgreSQL, Redis or Prefect, from its fixtures
    (a test reaching them otherwise carries the mark itself); refuse a test using the shared
    stack outside STACK_GROUPS (it would build a stack of its own on any worker); and list the
    stack's tests first, one after the other (the stack stops after the last of a run of them:
    tests/stack.py), then the other `slow` tests, so that the long ones start early."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if SERVICE_FIXTURES & fixtures:
            item.add_marker(pytest.mark.services)
        if "stack" in fixtures and item.path.name not in STACK_GROUPS:
            raise pytest.UsageError(f"{item.nodeid} uses the stack: add it to STACK_GROUPS")
    items.sort(
        key=lambda item: (
            item.path.name not in STACK_GROUPS,
            item.get_closest_marker("slow") is None,
        )
    )


def use_database(url: str) -> None:
    """Point pledgeflow's settings (and so every task) at `url`."""
    os.environ["PLEDGEFLOW_DATABASE_URL"] = url
    reread_settings()
    _engine_for.cache_clear()


@pytest.fixture(autouse=True)
def settings_read_afresh() -> Iterator[None]:
    """After each test, settings are read again from the environment as the test's monkeypatch
    left it: settings a test chose (`helpers.configure`, an unreachable Redis, say) were read
    while its variables were set, and must not reach the next test on the same worker."""
    yield
    reread_settings()


@pytest.fixture(params=["auto", "portable"], ids=["staged", "portable"])
def write_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test once with each loader (`auto`: COPY on PostgreSQL; `portable`: executemany,
    as on SQLite); the writers' rules and counts must not change."""
    configure(monkeypatch, write_path=request.param)
    return str(request.param)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own for this test run, migrated to head, dropped after."""
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"pledgeflow_test_{RUN_ID}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"PostgreSQL is required at {ADMIN_URL} and could not be reached: {exc}")
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    previous = os.environ.get("PLEDGEFLOW_DATABASE_URL")
    use_database(url)
    from pledgeflow.migrations.runner import upgrade

    upgrade()
    yield url
    _engine_for.cache_clear()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
    if previous is None:
        os.environ.pop("PLEDGEFLOW_DATABASE_URL", None)
    else:
        os.environ["PLEDGEFLOW_DATABASE_URL"] = previous


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    """The real Redis; keys this run writes carry a unique prefix and are deleted after."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError as exc:  # pragma: no cover - depends on the machine
        pytest.fail(f"Redis is required at {REDIS_URL} and could not be reached: {exc}")
    with configured(redis_url=REDIS_URL, redis_key_prefix=f"pledgeflow-test-{RUN_ID}"):
        yield client
    for pattern in (f"pledgeflow-test-{RUN_ID}*", f"lock:pledgeflow-test-{RUN_ID}*"):
        for key in client.scan_iter(match=pattern):
            client.delete(key)
    client.close()


@pytest.fixture(scope="session")
def prefect_harness(redis_client: redis.Redis) -> Iterator[None]:
    """Prefect's test harness (a temporary API server) for the whole session; chunk results
    persist to the real Redis under this run's key prefix."""
    with (
        prefect_test_harness(server_startup_timeout=300),
        temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}),
    ):
        yield


@pytest.fixture
def db(pg_url: str) -> Iterator[Engine]:
    """The test run's PostgreSQL database, emptied before each test."""
    use_database(pg_url)
    engine = get_engine()
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))
    yield engine


@pytest.fixture
def sqlite_db(tmp_path: Path, pg_url: str) -> Iterator[Engine]:
    """A fresh SQLite database (the embedded default), migrated; PostgreSQL is restored after."""
    use_database(f"sqlite:///{tmp_path / 'pledgeflow.db'}")
    from pledgeflow.migrations.runner import upgrade

    upgrade()
    yield get_engine()
    use_database(pg_url)


@pytest.fixture
def slow_pledges(db: Engine) -> Iterator[None]:
    """Every pledge statement takes 0.4 s, so chunks overlap and faults land mid-chunk."""
    with slow_pledge_statements(db, 0.4):
        yield


@pytest.fixture
def flaky_pledge(db: Engine) -> Iterator[str]:
    """Fail, on its chunk's first attempt only, any transaction writing pledge key 'flaky'.

    The fault lives in the database, not in pledgeflow: no code path a user can reach.
    """
    with db.begin() as conn:
        conn.execute(
            text("""
            CREATE FUNCTION test_flaky() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.pledge_id = 'flaky' AND (
                SELECT attempts FROM csv_upload_chunk
                WHERE upload_id = NEW.upload_id AND NEW.source_row >= first_row
                  AND NEW.source_row < first_row + row_count) < 2
              THEN RAISE EXCEPTION 'injected first-attempt failure'; END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER test_flaky BEFORE INSERT OR UPDATE ON pledge
            FOR EACH ROW EXECUTE FUNCTION test_flaky();
        """)
        )
    yield "flaky"
    with db.begin() as conn:
        conn.execute(text("DROP TRIGGER test_flaky ON pledge; DROP FUNCTION test_flaky();"))
