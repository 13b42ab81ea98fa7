"""The task runner chunk tasks run on: a bounded thread pool, or an existing Dask cluster."""

from __future__ import annotations

from typing import Any

from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner

from pledgeflow.settings import get_settings


def chunk_task_runner() -> TaskRunner[Any]:
    """A Dask runner on `PLEDGEFLOW_DASK_ADDRESS` when set, else a thread pool of
    `PLEDGEFLOW_TASK_CONCURRENCY` threads (Prefect's default pool is unbounded; each thread
    holds a database connection)."""
    settings = get_settings()
    if settings.dask_address:
        from prefect_dask.task_runners import DaskTaskRunner  # only needed past one machine

        runner: TaskRunner[Any] = DaskTaskRunner(address=settings.dask_address)
        return runner
    return ThreadPoolTaskRunner(max_workers=settings.task_concurrency)
