"""Prefect concurrency limits that keep every worker, together, inside PostgreSQL's budget.

Three Prefect mechanisms, all held by the Prefect server so they bound any number of workers
on any number of machines:

- each importing deployment's `concurrency_limit` (prefect.yaml, ENQUEUE): flow runs past it
  wait in `AwaitingConcurrencySlot` instead of starting a process;
- the global concurrency limit `pledgeflow-db-writes`: a chunk task holds one slot while it
  claims and writes its chunk;
- a `bulk` work queue of lower priority and a concurrency limit below the deployment's: the
  webhook sends a shop's uploads there once the shop has its fair share of runs unfinished, so
  one shop's burst leaves a run slot free for other shops.

`plan_limits` sizes them from `max_connections`; `apply_limits` writes them to the server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.actions import DeploymentUpdate
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import (
    ConcurrencyLimitStrategy,
    ConcurrencyOptions,
    StateType,
)
from prefect.concurrency.sync import concurrency
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

logger = logging.getLogger(__name__)

DB_WRITES_LIMIT = "pledgeflow-db-writes"
BULK_QUEUE = "bulk"
WORK_POOL = "pledgeflow-process"
PROCESS_UPLOAD = "process-upload/process-upload"
# Operator-started runs: one each at a time (prefect.yaml says the same); their connections are
# part of the budget below.
OTHER_IMPORTING = {"import-file/import-file": 1, "retry-upload/retry-upload": 1}
# A chunk task renews its slot's lease while it holds it; a crashed worker's slot comes back
# after this long.
SLOT_LEASE_SECONDS = 60.0
UNFINISHED = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING]


@dataclass(frozen=True)
class LimitPlan:
    """How many runs and chunk writes fit in a database's connection budget."""

    max_connections: int
    reserved: int
    pool_size: int
    upload_runs: int
    other_runs: int
    chunk_writes: int
    bulk_runs: int
    fair_share: int

    @property
    def peak_connections(self) -> int:
        """The most connections pledgeflow can open: every run's pool and the webhook's."""
        return (self.upload_runs + self.other_runs + 1) * self.pool_size

    def as_dict(self) -> dict[str, Any]:
        """The plan and its peak, for printing."""
        return {**asdict(self), "peak_connections": self.peak_connections}


class BudgetTooSmallError(ValueError):
    """max_connections leaves no room for a single upload run."""


def plan_limits(
    max_connections: int, reserved: int, task_concurrency: int, fair_share: int = 1
) -> LimitPlan:
    """Size the limits so that every run's pool, plus the webhook's, fits in
    `max_connections - reserved` (the rest is for the web app, the Prefect server, superusers
    and headroom)."""
    pool = task_concurrency + 1
    others = sum(OTHER_IMPORTING.values())
    processes = (max_connections - reserved) // pool
    upload_runs = processes - 1 - others  # one process is the webhook
    if upload_runs < 1:
        raise BudgetTooSmallError(
            f"max_connections {max_connections} minus {reserved} reserved leaves room for "
            f"{max(processes, 0)} processes of {pool} connections; at least {others + 2} are "
            "needed: raise max_connections, lower --reserve or PLEDGEFLOW_TASK_CONCURRENCY"
        )
    return LimitPlan(
        max_connections=max_connections,
        reserved=reserved,
        pool_size=pool,
        upload_runs=upload_runs,
        other_runs=others,
        chunk_writes=(upload_runs + others) * task_concurrency,
        # At least one upload run slot is always left to shops under their fair share.
        bulk_runs=max(1, upload_runs - max(1, upload_runs // 4)),
        fair_share=fair_share,
    )


async def apply_limits(plan: LimitPlan, client: PrefectClient) -> list[str]:
    """Write the plan to the Prefect server; return what was set, one line each."""
    done = []
    await client.upsert_global_concurrency_limit_by_name(DB_WRITES_LIMIT, plan.chunk_writes)
    done.append(f"global concurrency limit {DB_WRITES_LIMIT}: {plan.chunk_writes}")
    for name, limit in {PROCESS_UPLOAD: plan.upload_runs, **OTHER_IMPORTING}.items():
        deployment = await client.read_deployment_by_name(name)
        await client.update_deployment(
            deployment.id,
            DeploymentUpdate(
                concurrency_limit=limit,
                concurrency_options=ConcurrencyOptions(
                    collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
                ),
            ),
        )
        done.append(f"deployment {name}: {limit} runs at once, more are queued")
    try:
        queue = await client.read_work_queue_by_name(BULK_QUEUE, work_pool_name=WORK_POOL)
        await client.update_work_queue(queue.id, concurrency_limit=plan.bulk_runs)
    except ObjectNotFound:
        await client.create_work_queue(
            BULK_QUEUE,
            description="Uploads of a shop past its fair share of runs (pledgeflow webhook).",
            concurrency_limit=plan.bulk_runs,
            priority=100,
            work_pool_name=WORK_POOL,
        )
    done.append(f"work queue {WORK_POOL}/{BULK_QUEUE}: {plan.bulk_runs} runs at once")
    return done


def prefect_api_configured() -> bool:
    """Whether a Prefect server is configured (limits on a temporary server would vanish)."""
    return bool(PREFECT_API_URL.value())


@lru_cache(maxsize=4)
def _limit_exists(name: str, api_url: str | None) -> bool:
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            return False
    return True


def forget_limits() -> None:
    """Look the limits up again on next use (tests create and delete them)."""
    _limit_exists.cache_clear()
    _bulk_lanes.clear()


@contextmanager
def database_slot() -> Iterator[None]:
    """Hold a slot of the database-writes limit while a chunk claims and writes its rows.

    Without the limit (a CLI import on Prefect's temporary server, or `limits apply` not run)
    this does nothing, once per process looked up: Prefect's own `concurrency()` would skip a
    missing limit too, but with a warning for every chunk.
    """
    if not _limit_exists(DB_WRITES_LIMIT, PREFECT_API_URL.value()):
        yield
        return
    with concurrency(DB_WRITES_LIMIT, occupy=1, lease_duration=SLOT_LEASE_SECONDS):
        yield


_lane_locks: dict[str, asyncio.Lock] = {}


async def upload_queue(
    client: PrefectClient,
    deployment_id: UUID,
    work_pool_name: str | None,
    shop: str,
    upload_id: int,
    fair_share: int = 1,
) -> str | None:
    """The work queue for a new run of `shop`'s upload: the deployment's own while the shop has
    fewer than `fair_share` runs unfinished, else the lower-priority bulk queue.

    A redelivery (the upload already has a run) keeps the deployment's queue, so the
    idempotency key answers with that run; without a work pool, or before `limits apply` has
    created the bulk queue, there is no lane to send it to and the deployment's queue is used.
    """
    if work_pool_name is None:
        return None

    async def unfinished(tag: str) -> int:
        return await client.count_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=[tag]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED)),
            ),
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
        )

    if await unfinished(f"shop:{shop}") < fair_share or await unfinished(f"upload:{upload_id}"):
        return None
    return BULK_QUEUE if await _bulk_lane_exists(client, work_pool_name) else None


# Whether `limits apply` has created the bulk queue, per work pool and server, for
# BULK_LANE_TTL_SECONDS: a burst asks for every delivery, and the queue changes only on apply.
BULK_LANE_TTL_SECONDS = 30.0
_bulk_lanes: dict[tuple[str, str | None], tuple[float, bool]] = {}


async def _bulk_lane_exists(client: PrefectClient, work_pool_name: str) -> bool:
    key = (work_pool_name, PREFECT_API_URL.value())
    cached = _bulk_lanes.get(key)
    if cached and time.monotonic() - cached[0] < BULK_LANE_TTL_SECONDS:
        return cached[1]
    try:
        await client.read_work_queue_by_name(BULK_QUEUE, work_pool_name=work_pool_name)
        exists = True
    except ObjectNotFound:
        exists = False
    _bulk_lanes[key] = (time.monotonic(), exists)
    return exists


def shop_lane_lock(shop: str) -> asyncio.Lock:
    """One lock per shop, so that a burst of one shop's webhooks is counted one at a time."""
    return _lane_locks.setdefault(shop, asyncio.Lock())
