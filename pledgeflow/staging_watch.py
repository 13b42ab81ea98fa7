"""What the caller of an import-file run in its own process learns while the run stages its file.

`pledgeflow import` runs the import-file flow, the one the deployment runs, in-process. It
watches the staging through a `StagingWatch` set around the call: the rows read so far (its
progress), the upload once staged (it then polls the upload's counters) and the typed reason a
file was refused (its short message and exit 2). A flow parameter could not carry these (a
deployment's parameters are JSON a person may set); a context variable reaches the stage task
in the same process, and a run a worker started has none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass
class StagingWatch:
    """The staging of one in-process run, as its caller sees it."""

    on_rows: Callable[[int], None] | None = None
    on_staged: Callable[[int], None] | None = None
    upload_id: int | None = None
    refusal: ValueError | None = None

    def staged(self, upload_id: int) -> None:
        """The file is stored as `upload_id` (or the run had staged it already)."""
        self.upload_id = upload_id
        if self.on_staged is not None:
            self.on_staged(upload_id)

    def refused(self, reason: ValueError) -> None:
        """The file was refused for `reason` (a StagingError or MappingError); nothing stored."""
        self.refusal = reason


_current: ContextVar[StagingWatch | None] = ContextVar("pledgeflow_staging_watch", default=None)


@contextmanager
def watching(watch: StagingWatch) -> Iterator[StagingWatch]:
    """Let the runs started in this context report their staging to `watch`."""
    token = _current.set(watch)
    try:
        yield watch
    finally:
        _current.reset(token)


def current_watch() -> StagingWatch | None:
    """The watch of the caller that started this run in its own process, if any."""
    return _current.get()
