"""Make sure the CLI has a Prefect API before it stores anything: the configured server, or
Prefect's temporary local server started with time to spare and retried once."""

from __future__ import annotations

import base64
import copy
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from prefect.logging.handlers import PrefectConsoleHandler

# Prefect's own default (20 s) is too short for its temporary server on a busy two-core
# machine: measured 15 s on an idle one, 41 s at a load average of 13 on two cores.
DEFAULT_STARTUP_SECONDS = 120
# Environment the CLI sets (unless the user did) before Prefect is imported: no telemetry
# from pledgeflow's embedded use of Prefect, and a startup timeout that fits a loaded machine.
PREFECT_DEFAULTS = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(DEFAULT_STARTUP_SECONDS),
}
SERVER_HINT = (
    "start one with `prefect server start` and set PREFECT_API_URL=http://127.0.0.1:4200/api"
)


class PrefectUnavailableError(RuntimeError):
    """No Prefect API answers; nothing was stored."""

    code = "prefect_unavailable"

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


class PrefectUnauthorizedError(PrefectUnavailableError):
    """The Prefect API answers but refuses this client's credentials; nothing was stored."""

    code = "prefect_unauthorized"


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def ensure_prefect_api(notify: Callable[[str], None] = _say) -> str:
    """Return the Prefect API URL that answers: PREFECT_API_URL, or the temporary server."""
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_ALLOW_EPHEMERAL_MODE,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    api = PREFECT_API_URL.value()
    if api:
        check_reachable(str(api))
        return str(api)
    if not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        raise PrefectUnavailableError(
            "PREFECT_API_URL is not set and Prefect's temporary server is turned off",
            SERVER_HINT,
        )
    seconds = PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()
    notify(
        f"starting Prefect's temporary local server (up to {seconds:g} s; "
        "set PREFECT_API_URL to use a running server instead)"
    )
    return start_temporary_server((seconds, seconds), notify)


def check_reachable(api: str, timeout: float = 10.0) -> None:
    """Raise PrefectUnavailableError unless the API at `api` answers its health check."""
    try:
        response = httpx.get(f"{api.rstrip('/')}/health", timeout=timeout)
    except httpx.HTTPError as exc:
        reason = type(exc).__name__
        raise PrefectUnavailableError(
            f"cannot reach the Prefect API at {api} ({reason})",
            "start that server, or unset PREFECT_API_URL to use Prefect's temporary local server",
        ) from exc
    if response.status_code != 200:
        raise PrefectUnavailableError(
            f"the Prefect API at {api} answered {response.status_code} to its health check",
            "check PREFECT_API_URL (it ends in /api) and the server's logs",
        )
    check_credentials(api, timeout)


def check_credentials(api: str, timeout: float = 10.0) -> None:
    """Raise PrefectUnauthorizedError if the API refuses the credentials Prefect's client sends.

    The health check is open on a locked server, so without this a client missing
    PREFECT_API_AUTH_STRING would stage its file and only then be refused.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_KEY

    # Sent as Prefect's own client sends them: the auth string first, else the API key.
    auth_string, api_key = PREFECT_API_AUTH_STRING.value(), PREFECT_API_KEY.value()
    headers: dict[str, str] = {}
    if auth_string:
        headers["Authorization"] = "Basic " + base64.b64encode(auth_string.encode()).decode()
    elif api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    try:
        response = httpx.get(f"{api.rstrip('/')}/version", headers=headers, timeout=timeout)
    except httpx.HTTPError:
        return  # unreachable now: the caller reports what fails when it talks to it
    if response.status_code in (401, 403):
        given = (
            "PREFECT_API_AUTH_STRING was refused"
            if auth_string
            else "PREFECT_API_KEY was refused"
            if api_key
            else "PREFECT_API_AUTH_STRING is not set, and the server asks for it"
        )
        raise PrefectUnauthorizedError(
            f"the Prefect API at {api} answered {response.status_code}: {given}; "
            "nothing was stored",
            "set PREFECT_API_AUTH_STRING to the server's PREFECT_SERVER_API_AUTH_STRING "
            "(user:password)",
        )


def start_temporary_server(timeouts: Sequence[float], notify: Callable[[str], None] = _say) -> str:
    """Start Prefect's temporary server, one attempt per timeout; return its API URL.

    A start that does not answer in time is stopped before the next attempt, so no half
    started server is left behind; after the last one the error says what to do.
    """
    from prefect.server.api.server import SubprocessASGIServer

    began = time.monotonic()
    for attempt, seconds in enumerate(timeouts, 1):
        # Prefect's clients reuse this instance (it is keyed by port None) once it runs.
        server = SubprocessASGIServer()
        started = time.monotonic()
        try:
            # Prefect counts the timeout in polls, which a loaded machine stretches: the
            # messages give the wall-clock time waited.
            server.start(timeout=seconds)  # type: ignore[arg-type]  # a float works too
        except (RuntimeError, httpx.HTTPError):
            server.stop()
            if attempt < len(timeouts):
                notify(
                    "Prefect's temporary server did not answer within "
                    f"{time.monotonic() - started:.0f} s; starting it once more"
                )
                continue
            raise PrefectUnavailableError(
                "Prefect's temporary server did not start: "
                f"{len(timeouts)} attempts in {time.monotonic() - began:.0f} s; nothing was stored",
                f"{SERVER_HINT}, or allow it more time with "
                "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS",
            ) from None
        return server.api_url
    raise PrefectUnavailableError("no attempt to start Prefect's temporary server", SERVER_HINT)


class _WithoutTraceback(logging.Formatter):
    """Formats a record as `inner` would, leaving out its traceback."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        bare = copy.copy(record)
        bare.exc_info, bare.exc_text, bare.stack_info = None, None, None
        return self.inner.format(bare)


def prefect_console_handlers() -> list[PrefectConsoleHandler]:
    """Prefect's console handlers, on whichever loggers its logging configuration put them."""
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers: list[Any] = [logging.getLogger()]
    loggers += [
        logger_
        for logger_ in logging.Logger.manager.loggerDict.values()
        if isinstance(logger_, logging.Logger)
    ]
    found: dict[int, PrefectConsoleHandler] = {}
    for logger_ in loggers:
        for handler in logger_.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                found[id(handler)] = handler
    return list(found.values())


def console_logs_without_tracebacks() -> None:
    """Keep tracebacks out of the console: Prefect's run logs (the API) still hold them."""
    import prefect.main  # noqa: F401  # sets up Prefect's handlers

    for handler in prefect_console_handlers():
        if not isinstance(handler.formatter, _WithoutTraceback):
            handler.setFormatter(_WithoutTraceback(handler.formatter or logging.Formatter()))


class _Until(logging.Filter):
    """Passes records until `done()` is true."""

    def __init__(self, done: Callable[[], bool]) -> None:
        super().__init__()
        self.done = done

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.done()


@contextmanager
def console_silent_once(done: Callable[[], bool]) -> Iterator[None]:
    """Within the context, Prefect's console prints nothing once `done()` is true (the run's
    logs in the API keep every line)."""
    until = _Until(done)
    handlers = prefect_console_handlers()
    for handler in handlers:
        handler.addFilter(until)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(until)
