"""The chunk task: one task run per chunk, named after it, its result cached per chunk."""

from __future__ import annotations

from typing import Any

from prefect import Task, task

from pledgeflow.chunks import ChunkSummary, process_chunk
from pledgeflow.results import ResultConfig, chunk_cache_policy, result_expiration
from tasks.retry_policy import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient


@task(
    name="process-chunk",
    task_run_name="chunk-{chunk_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_jitter_factor=RETRY_JITTER,
    retry_condition_fn=retry_if_transient,
)
def process_chunk_task(chunk_id: int, upload_key: str) -> ChunkSummary:
    """Claim one chunk and import its rows in one transaction."""
    return process_chunk(chunk_id)


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
