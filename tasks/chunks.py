"""The chunk task: one task run per chunk, named after it, its result cached per chunk; and the
step that runs one per chunk of an upload."""

from __future__ import annotations

import threading
from typing import Any

from prefect import Task, tags, task, unmapped
from prefect.futures import as_completed
from prefect.runtime import flow_run, task_run
from prefect.settings import PREFECT_API_URL

from pledgeflow.chunks import ChunkSummary, process_chunk
from pledgeflow.limits import database_slot
from pledgeflow.results import ResultConfig, chunk_cache_policy, result_config, result_expiration
from pledgeflow.settings import get_settings
from pledgeflow.status import flow_run_owner, local_owner
from pledgeflow.uploads import UploadPlan
from tasks.observability import Progress
from tasks.uploads import record_unstarted_chunks_task


def claim_owner() -> str:
    """Who claims a chunk: the flow run, so that its own retry (of the task or of the whole
    run) takes the chunk back at once, while any other run waits for the lease."""
    run_id = flow_run.id
    return flow_run_owner(run_id) if run_id else local_owner()


def chunk_run_name() -> str:
    """The chunk's name (index and rows, as in the summary and `pledgeflow status`)."""
    parameters = task_run.parameters
    return str(parameters.get("chunk_name") or f"chunk-id-{parameters['chunk_id']}")


# Transient database errors are retried inside the task for a time budget (tasks/retry_policy.py);
# a Prefect retry on top would multiply it.
@task(name="process-chunk", task_run_name=chunk_run_name, retries=0)
def process_chunk_task(chunk_id: int, upload_key: str, chunk_name: str = "") -> ChunkSummary:
    """Claim one chunk and import its rows in one transaction, holding a database slot;
    `chunk_name` names the task run only."""
    with database_slot():
        return process_chunk(chunk_id, owner=claim_owner())


def chunk_task_with(config: ResultConfig) -> Task[Any, ChunkSummary]:
    """The chunk task persisting its result where `config` says, cached per chunk, so a
    retried flow run skips the chunks that completed."""
    storage: dict[str, Any] = {"result_storage": config.storage} if config.storage else {}
    return process_chunk_task.with_options(
        cache_policy=chunk_cache_policy(config),
        persist_result=True,
        **storage,
        cache_expiration=result_expiration(),
        result_serializer="json",
    )


_configured: dict[tuple[Any, ...], Task[Any, ChunkSummary]] = {}
_configuring = threading.Lock()


def configured_chunk_task() -> Task[Any, ChunkSummary]:
    """The chunk task with its result storage and locks, configured once per process (for the
    Prefect API and Redis settings in use): saving the Redis block costs a few API calls, which
    a small upload's run should not pay again. A process that found Redis unreachable asks
    again next time, so it goes back to Redis once Redis answers."""
    settings = get_settings()
    redis = settings.redis_url.get_secret_value() if settings.redis_url else None
    key = (
        PREFECT_API_URL.value(),
        redis,
        settings.result_ttl_seconds,
        settings.chunk_lease_seconds,
    )
    with _configuring:
        configured = _configured.get(key)
        if configured is None:
            config = result_config()
            configured = chunk_task_with(config)
            if config.uses_redis or redis is None:
                _configured[key] = configured
    return configured


def run_chunk_tasks(plan: UploadPlan, *, dry_run: bool = False) -> None:
    """One chunk task per chunk of the plan on the flow's task runner, the progress artifact
    moving as each finishes; chunks whose task failed before claiming them (a lost result
    store) are recorded FAILED. A dry run writes nothing, so it runs none."""
    if dry_run:
        return
    chunk_task = configured_chunk_task()
    progress = Progress(plan.upload_id, len(plan.chunk_ids))
    with tags(f"upload:{plan.upload_id}"):
        futures = chunk_task.map(
            plan.chunk_ids, upload_key=unmapped(plan.upload_key), chunk_name=plan.chunk_names
        )
        for _ in as_completed(list(futures)):
            progress.advance()
    for future in futures:
        # Takes the final state the task run returned in this process; without it, `state`
        # asked the Prefect API for each chunk's task run, which the server may not have
        # recorded yet (it records task runs from events): a 404, read as Pending, hid a
        # failed chunk task.
        future.wait()
    failed = {
        chunk_id: future.state.message or ""
        for chunk_id, future in zip(plan.chunk_ids, futures, strict=True)
        if future.state.is_failed()
    }
    if failed:
        record_unstarted_chunks_task(failed)
