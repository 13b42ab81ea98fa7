"""Limits across runs: sized from max_connections, held by chunk tasks, absent limits harmless."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
from prefect.exceptions import ObjectNotFound
from prefect.task_runners import ThreadPoolTaskRunner
from sqlalchemy.engine import Engine

from flows.process_upload import process_upload
from pledgeflow.limits import (
    DB_WRITES_LIMIT,
    BudgetTooSmallError,
    database_slot,
    forget_limits,
    plan_limits,
)
from pledgeflow.settings import get_settings
from pledgeflow.staging import stage_file
from pledgeflow.uploads import read_upload
from pledgeflow_bench.exports import backers, render
from tests.helpers import write_file
from tests.services import ROOT
from tests.test_chunk_concurrency import chunk_spans, max_overlap


def test_every_importing_deployment_queues_runs_past_its_limit() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    limits = {d["name"]: d.get("concurrency_limit") for d in config["deployments"]}

    for name in ("process-upload", "import-file", "retry-upload"):
        assert limits[name]["collision_strategy"] == "ENQUEUE", name
        assert limits[name]["limit"] >= 1, name
    assert limits["sweep-stuck-chunks"] is None


@pytest.mark.parametrize("max_connections", [40, 100, 200, 500])
def test_a_plan_keeps_every_process_pool_inside_the_budget(max_connections: int) -> None:
    plan = plan_limits(max_connections, reserved=max_connections // 4, task_concurrency=2)

    assert plan.pool_size == 3
    assert plan.peak_connections <= max_connections - plan.reserved
    # One more run of any kind would not fit.
    assert plan.peak_connections + plan.pool_size > max_connections - plan.reserved
    assert plan.chunk_writes == (plan.upload_runs + plan.other_runs) * 2
    assert 1 <= plan.bulk_runs < plan.upload_runs


def test_the_default_production_plan_leaves_room() -> None:
    plan = plan_limits(100, reserved=40, task_concurrency=2)

    assert (plan.upload_runs, plan.chunk_writes, plan.bulk_runs) == (17, 38, 13)
    assert plan.peak_connections == 60


def test_a_budget_too_small_for_one_run_is_refused_with_what_to_change() -> None:
    with pytest.raises(BudgetTooSmallError, match="raise max_connections"):
        plan_limits(20, reserved=12, task_concurrency=2)


def test_the_process_pool_is_what_the_process_uses_at_once(db: Engine) -> None:
    settings = get_settings()
    assert settings.pool_size == settings.task_concurrency + 1
    assert db.pool.size() == settings.pool_size  # type: ignore[attr-defined]
    assert db.pool._max_overflow == 0  # type: ignore[attr-defined]


@pytest.fixture
def one_write_slot(prefect_harness: None) -> Iterator[None]:
    """The database-writes limit with one slot, on the test harness's Prefect server."""
    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(
            GlobalConcurrencyLimitCreate(name=DB_WRITES_LIMIT, limit=1)
        )
    forget_limits()
    yield
    with get_client(sync_client=True) as client:
        client.delete_global_concurrency_limit_by_name(DB_WRITES_LIMIT)
    forget_limits()


@pytest.mark.usefixtures("prefect_harness")
def test_without_the_limit_a_slot_never_blocks_nor_creates_the_limit() -> None:
    forget_limits()
    with database_slot():
        pass  # the one lookup of this process
    began = time.perf_counter()
    for _ in range(50):
        with database_slot():
            pass
    assert time.perf_counter() - began < 0.5
    with get_client(sync_client=True) as client, pytest.raises(ObjectNotFound):
        client.read_global_concurrency_limit_by_name(DB_WRITES_LIMIT)


@pytest.mark.slow
def test_chunk_tasks_of_any_run_take_turns_on_the_database_slots(
    db: Engine, tmp_path: Path, slow_pledges: None, one_write_slot: None
) -> None:
    path = write_file(tmp_path, "slots.csv", render("2020", backers(24)))
    upload_id = stage_file(path, shop="slots.example.com", project="Slots", chunk_size=6)
    wide = process_upload.with_options(
        task_runner=ThreadPoolTaskRunner(max_workers=3)  # type: ignore[arg-type]
    )

    wide(upload_id, return_state=True)

    assert read_upload(upload_id).status == "COMPLETED"
    spans = chunk_spans(db)
    assert len(spans) == 4
    # Three chunk tasks were free to run at once; the one slot let one write at a time.
    assert max_overlap(spans) == 1
    with get_client(sync_client=True) as client:
        limit = client.read_global_concurrency_limit_by_name(DB_WRITES_LIMIT)
    assert limit.active_slots == 0
