"""A flow run's heartbeats, without waiting for the heartbeat thread when the run ends.

Prefect 3.9's sync flow engine (`prefect.flow_engine._send_heartbeats`) joins its heartbeat
thread as the run's context exits, after the final state is set, and the thread sleeps in 1 s
steps: every caller of a flow (`pledgeflow import`, a worker's run process) waited 0-1 s more
for nothing, 0.55-1.0 s on 10,000-row imports measured with the Prefect API calls timed (a
third of a small import's fixed cost). Prefect's async engine runs the same context manager with
`join_on_exit=False`; the flows here now do too. The heartbeats are unchanged (same events,
same `PREFECT_FLOWS_HEARTBEAT_FREQUENCY`): the thread is a daemon, emits its first heartbeat at
the run's start as before, and on the run's end stops at its next 1 s step without emitting
again.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect import flow_engine

_prefects = flow_engine._send_heartbeats


@contextmanager
def _unjoined(engine: Any, join_on_exit: bool = True) -> Iterator[None]:
    """Prefect's heartbeat context, its thread not joined on exit (`join_on_exit` is ignored)."""
    with _prefects(engine, join_on_exit=False):
        yield


def stop_joining_heartbeats() -> bool:
    """Make flow runs in this process leave the heartbeat thread to end on its own; False (and
    nothing changed) under a Prefect whose heartbeat context takes no `join_on_exit`."""
    if "join_on_exit" not in inspect.signature(_prefects).parameters:
        return False
    flow_engine._send_heartbeats = _unjoined
    return True
