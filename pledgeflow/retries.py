"""Retrying what can heal: transient database errors, for a total time sized to an outage."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_before_delay,
    wait_exponential_jitter,
)

from pledgeflow.failures import is_transient
from pledgeflow.settings import get_settings

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

# Backoff: 0.5 s, 1 s, 2 s … capped at 8 s, each plus up to 1 s of jitter, so that workers
# that lost the database together do not all come back in the same instant.
FIRST_WAIT_SECONDS = 0.5
MAX_WAIT_SECONDS = 8.0
JITTER_SECONDS = 1.0


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome else None
    name = getattr(state.fn, "__name__", "call")
    # The first retry says what happened; later ones stay quiet until the budget runs out.
    if state.attempt_number == 1:
        logger.warning(
            "%s: transient database error (%s), retrying for up to %.0f s",
            name,
            type(exc).__name__,
            get_settings().transient_retry_seconds,
        )


def transient_retrying(seconds: float | None = None) -> Retrying:
    """A tenacity policy: retry transient errors with capped exponential backoff and jitter
    while the next try would start within `seconds` of the first (default
    `PLEDGEFLOW_TRANSIENT_RETRY_SECONDS`); then re-raise the last error. Others raise at once."""
    budget = get_settings().transient_retry_seconds if seconds is None else seconds
    return Retrying(
        retry=retry_if_exception(is_transient),
        stop=stop_before_delay(budget),
        wait=wait_exponential_jitter(
            multiplier=FIRST_WAIT_SECONDS, max=MAX_WAIT_SECONDS, jitter=JITTER_SECONDS
        ),
        before_sleep=_log_retry,
        reraise=True,
    )


def retry_transient(fn: Callable[P, R]) -> Callable[P, R]:
    """Decorate a function so transient database errors are retried within the budget."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        return transient_retrying()(fn, *args, **kwargs)

    return wrapper
