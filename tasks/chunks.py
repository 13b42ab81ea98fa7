"""The chunk task: one task run per chunk, named after it."""

from __future__ import annotations

from prefect import task

from pledgeflow.chunks import ChunkSummary, process_chunk
from tasks.retry_policy import RETRIES, RETRY_DELAYS, RETRY_JITTER, retry_if_transient


@task(
    name="process-chunk",
    task_run_name="chunk-{chunk_id}",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAYS,
    retry_jitter_factor=RETRY_JITTER,
    retry_condition_fn=retry_if_transient,
)
def process_chunk_task(chunk_id: int) -> ChunkSummary:
    """Claim one chunk and import its rows in one transaction."""
    return process_chunk(chunk_id)
