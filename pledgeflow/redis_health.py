"""Redis is a cache: an error is logged once, Redis is skipped a while, then tried again."""

from __future__ import annotations

import logging
import threading
import time

import redis

logger = logging.getLogger(__name__)

# What a lost, refusing or hung Redis raises through redis-py.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
# After an error, this process leaves that Redis alone this long instead of having every chunk
# wait for its own connection error; then the next call tries it again.
PAUSE_SECONDS = 30.0

_paused_until: dict[str, float] = {}
_down: set[str] = set()
_lock = threading.Lock()


def redis_paused(url: str) -> bool:
    """Whether this process skips the Redis at `url` for now (it failed a moment ago)."""
    return time.monotonic() < _paused_until.get(url, 0.0)


def redis_failed(url: str, shown: str, exc: BaseException) -> None:
    """Note that the Redis at `url` failed; log it once per outage, not once per call."""
    with _lock:
        _paused_until[url] = time.monotonic() + PAUSE_SECONDS
        if url in _down:
            return
        _down.add(url)
    logger.warning(
        "Redis at %s is unreachable (%s): chunk results go to local storage, locks and the row "
        "cache are skipped, and the database claim guards every chunk; Redis is tried again every "
        "%.0f s",
        shown,
        type(exc).__name__,
        PAUSE_SECONDS,
    )


def redis_answered(url: str, shown: str) -> None:
    """Note that the Redis at `url` answered; log once when it comes back after an outage."""
    if url not in _down:
        return
    with _lock:
        if url not in _down:
            return
        _down.discard(url)
    logger.warning("Redis at %s answers again: results, locks and the row cache use it", shown)
