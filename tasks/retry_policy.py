"""The retry policy of database tasks: transient errors retried inside the task run.

Transient database errors (a lost connection, a restart or failover, no free connection slot,
a deadlock) are retried by tenacity inside the task for `PLEDGEFLOW_TRANSIENT_RETRY_SECONDS`
with capped exponential backoff and jitter (pledgeflow/retries.py); data errors fail at once.
Retrying inside the task run, rather than with Prefect's per-task retry count, gives a budget
in time (what an outage is measured in) and keeps a chunk's claim and its task run together:
a task run fails only once the budget is spent, so Prefect shows no failure that healed.
"""

from __future__ import annotations

from pledgeflow.retries import retry_transient, transient_retrying

__all__ = ["retry_transient", "transient_retrying"]
