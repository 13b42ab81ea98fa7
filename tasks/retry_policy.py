"""The retry policy shared by database-writing tasks: only what can heal is retried."""

from __future__ import annotations

from typing import Any

from prefect.tasks import exponential_backoff

from pledgeflow.failures import is_transient

RETRIES = 4
RETRY_DELAYS = exponential_backoff(backoff_factor=0.5)
RETRY_JITTER = 0.5


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a failed task run only for connection loss, deadlock or serialization failure."""
    exc = state.result(raise_on_failure=False)
    return isinstance(exc, BaseException) and is_transient(exc)
