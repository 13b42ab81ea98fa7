"""Tuning of Python's cycle collector for the import's hot passes: paused over passes that
hold many short lists, and the objects import leaves frozen once per process."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cycle collector for a pass that holds many short lists (a file streaming
    into chunks in staging, settlement's pass over every row's keys), then restore it.

    Every record is a new list held until its batch of chunks is written, so the collector
    ran again and again over thousands of live lists that form no cycle (reference counting
    frees them): a third of staging's time (100,000 rows at load 18-21: 11.8-14.8 s with it,
    9.1 s without)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@cache
def freeze_loaded_objects() -> None:
    """Once per process, before its first upload's work: move every object alive now (the
    modules and what importing them built) out of the cycle collector's reach (`gc.freeze`).

    Work on a chunk allocates lists by the hundred thousand (its JSON, its rows), and each
    full collection they trigger went over the millions of objects that prefect, pandas,
    pandera and SQLAlchemy leave after import, again and again: a quarter of an import's CPU
    (100,000 rows, load 7-10: 12.5 s of CPU with them collected, 8.3 s frozen). Frozen
    objects are still freed by reference counting; what they hold in a cycle once dropped
    is kept, once, for the life of the process."""
    gc.freeze()
