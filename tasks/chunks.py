"""The chunk task: one task run per chunk, named after it, its result cached per chunk."""

from __future__ import annotations

from typing import Any

from prefect import Task, task
from prefect.runtime import flow_run, task_run

from pledgeflow.chunks import ChunkSummary, process_chunk
from pledgeflow.limits import database_slot
from pledgeflow.results import ResultConfig, chunk_cache_policy, result_expiration
from pledgeflow.status import flow_run_owner, local_owner


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
