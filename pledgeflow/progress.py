"""What `pledgeflow import` shows while it runs: a live bar on a terminal, else a line now and then.

The numbers come from the upload's own counters, which each chunk's transaction recounts as it
commits (see `pledgeflow.counters`), so the bar shows what `pledgeflow status`, the web app and
the Prefect progress artifact show. A thread polls them while the flow runs in the foreground.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType

from prefect.logging.handlers import PrefectConsoleHandler
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from pledgeflow.prefect_api import prefect_console_handlers
from pledgeflow.status import UploadResult
from pledgeflow.uploads import read_upload

logger = logging.getLogger(__name__)
LIVE_INTERVAL = 0.5  # seconds between polls under a live bar
LINE_INTERVAL = 5.0  # seconds between lines without a terminal
WAITING = {"PENDING": "waiting for the flow run", "PROCESSING": "importing"}


class RowsPerSecondColumn(ProgressColumn):
    """Rows per second over rich's recent samples, with thousands separators."""

    def render(self, task: Task) -> Text:
        """The task's speed as `12,345 rows/s`."""
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "- rows/s", style="progress.data.speed")


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


class ImportProgress:
    """Shows staging, then an upload's chunks and rows done of its total, rows/s and ETA.

    On a terminal a rich live bar; elsewhere (CI, a pipe) a plain line every few seconds;
    disabled (`--json`) nothing at all. Use it as a context manager around staging and the
    flow run: `staged` is staging's callback, `watch` starts polling the staged upload.
    """

    def __init__(
        self,
        console: Console,
        *,
        enabled: bool = True,
        interval: float | None = None,
        read: Callable[[int], UploadResult] = read_upload,
        get_time: Callable[[], float] = time.monotonic,
        background: bool = True,
    ) -> None:
        self.console = console
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self.interval = interval or (LIVE_INTERVAL if self.live else LINE_INTERVAL)
        self.read = read
        self.get_time = get_time
        self.background = background  # poll from a thread; else the caller calls `refresh`
        self.progress = Progress(
            SpinnerColumn(finished_text="[progress.spinner]✓"),
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[chunks]}"),
            TextColumn("{task.fields[rows]}"),
            RowsPerSecondColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            disable=not self.live,
            get_time=get_time,
            # Rates over the last five minutes: chunks can take longer than rich's default 30 s
            # apart, and a window holding one chunk's sample has no rate.
            speed_estimate_period=300,
        )
        self.staging: TaskID | None = None
        self.importing: TaskID | None = None
        self.upload_id: int | None = None
        self.last: UploadResult | None = None
        self._last_line = float("-inf")
        self._last_text = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._handlers: list[tuple[PrefectConsoleHandler, Console, int]] = []

    def __enter__(self) -> ImportProgress:
        if self.live:
            self.progress.start()
            self._route_prefect_logs()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.upload_id is not None and exc_type is None:
            self.refresh(final=True)
        if self.live:
            self.progress.stop()
            self._restore_prefect_logs()

    def staged(self, rows: int) -> None:
        """Staging's callback: `rows` data rows of the file read so far."""
        if not self.enabled:
            return
        if self.staging is None:
            self.staging = self.progress.add_task(
                "staging", total=None, chunks="", rows="", start=True
            )
        self.progress.update(self.staging, completed=rows, rows=f"{rows:,} rows read")
        now = self.get_time()
        if not self.live and now - self._last_line >= self.interval:
            self._last_line = now
            self.console.print(
                f"staging: {rows:,} rows read", highlight=False, markup=False, soft_wrap=True
            )

    def watch(self, upload_id: int) -> None:
        """Start polling the staged upload's counters until the context exits."""
        self.upload_id = upload_id
        if not self.enabled:
            return
        if self.staging is not None:
            task = self.progress.tasks[self.staging]
            self.progress.update(self.staging, total=task.completed, description="staged")
        self.refresh()
        if not self.background:
            return
        self._thread = threading.Thread(target=self._poll, name="pledgeflow-progress", daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self.refresh()

    def refresh(self, *, final: bool = False) -> UploadResult | None:
        """Read the upload's counters once and show them; None when they cannot be read."""
        if not self.enabled or self.upload_id is None:
            return None
        try:
            upload = self.read(self.upload_id)
        except Exception as exc:  # a busy SQLite file, a lost connection: next poll retries
            logger.debug("progress of upload %s unreadable: %s", self.upload_id, exc)
            return None
        self.last = upload
        done = upload.imported_rows + upload.rejected_rows
        chunks = f"{upload.completed_chunks:,}/{upload.total_chunks:,} chunks"
        if upload.failed_chunks:
            chunks += f" ({upload.failed_chunks:,} failed)"
        rows = f"{done:,}/{upload.total_rows:,} rows"
        description = f"upload {upload.upload_id} " + WAITING.get(
            upload.status, upload.status.lower()
        )
        if self.importing is None:
            self.importing = self.progress.add_task(
                description, total=upload.total_rows or None, chunks=chunks, rows=rows
            )
        self.progress.update(
            self.importing,
            total=upload.total_rows or None,
            completed=done,
            description=description,
            chunks=chunks,
            rows=rows,
        )
        if not self.live:
            now = self.get_time()
            line = self.line()
            if now - self._last_line >= self.interval or (final and line != self._last_text):
                self._last_line, self._last_text = now, line
                self.console.print(line, highlight=False, markup=False, soft_wrap=True)
        return upload

    def line(self) -> str:
        """The plain one-line form of the upload's progress."""
        if self.importing is None:
            return ""
        task = self.progress.tasks[self.importing]
        speed = task.finished_speed or task.speed
        if not speed and task.finished and task.elapsed:
            # Done within one sample (a small file): rich has no speed, the whole run's is known.
            speed = task.completed / task.elapsed
        rate = f"{speed:,.0f} rows/s" if speed else "- rows/s"
        eta = "" if task.finished else f", ETA {_eta(task.time_remaining)}"
        return f"{task.description}: {task.fields['chunks']}, {task.fields['rows']}, {rate}{eta}"

    def _route_prefect_logs(self) -> None:
        # Prefect's console handler writes to the stream it was built with, under the live bar;
        # through this console its lines print above the bar. Per-chunk INFO lines would only
        # repeat the bar, so warnings and errors pass.
        for handler in prefect_console_handlers():
            self._handlers.append((handler, handler.console, handler.level))
            handler.console = self.console
            handler.setLevel(max(handler.level, logging.WARNING))

    def _restore_prefect_logs(self) -> None:
        for handler, console, level in self._handlers:
            handler.console = console
            handler.setLevel(level)
        self._handlers.clear()
