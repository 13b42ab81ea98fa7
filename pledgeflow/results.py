"""Where chunk task results persist (Redis, or local storage) and who serves their locks."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from prefect._internal.compatibility.async_dispatch import async_dispatch
from prefect.cache_policies import CacheKeyFnPolicy, CachePolicy
from prefect.context import TaskRunContext
from prefect.exceptions import ObjectAlreadyExists
from prefect.filesystems import LocalFileSystem, WritableFileSystem
from prefect.locking.protocol import LockManager
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH
from prefect.transactions import IsolationLevel
from prefect_redis import RedisDatabase, RedisLockManager
from sqlalchemy.engine import make_url
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_random

from pledgeflow.redis_health import REDIS_ERRORS, redis_answered, redis_failed, redis_paused
from pledgeflow.settings import get_settings

logger = logging.getLogger(__name__)
Timeout = float | None  # seconds, or None for the lock manager's default


class LeasedRedisLockManager(RedisLockManager):
    """Redis locks that expire, and that a lost Redis does not turn into failed chunks.

    prefect-redis takes locks with no hold timeout unless the caller passes one, and Prefect's
    transactions pass none; this lock manager supplies the chunk lease as the default, so a
    worker killed while holding one cannot block retries forever. While Redis fails, every
    lock is granted at once: the database claim still lets one run at a time write a chunk.
    """

    def __init__(self, *, hold_seconds: float, connection_url: str, **kwargs: Any) -> None:
        self.hold_seconds = hold_seconds
        super().__init__(connection_url=connection_url, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "hold_seconds": self.hold_seconds}

    def _down(self) -> bool:
        return redis_paused(str(self.connection_url))

    @contextmanager
    def _tolerated(self) -> Iterator[None]:
        # A Redis error is recorded (pausing Redis for a while) and swallowed: the caller
        # then answers as it does while Redis is down.
        try:
            yield
        except REDIS_ERRORS as exc:
            redis_failed(str(self.connection_url), redis_url_shown(str(self.connection_url)), exc)

    def acquire_lock(
        self, key: str, holder: str, acquire_timeout: Timeout = None, hold_timeout: Timeout = None
    ) -> bool:
        with self._tolerated():
            if not self._down():
                hold = hold_timeout or self.hold_seconds
                return bool(super().acquire_lock(key, holder, acquire_timeout, hold))
        return True

    async def aacquire_lock(
        self, key: str, holder: str, acquire_timeout: Timeout = None, hold_timeout: Timeout = None
    ) -> bool:
        with self._tolerated():
            if not self._down():
                hold = hold_timeout or self.hold_seconds
                return bool(await super().aacquire_lock(key, holder, acquire_timeout, hold))
        return True

    def release_lock(self, key: str, holder: str) -> None:
        with self._tolerated():
            if not self._down():
                super().release_lock(key, holder)
                return
        # The lock, if Redis still has one, expires with its hold timeout.
        self._locks.pop(self._lock_name_for_key(key), None)

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        with self._tolerated():
            if not self._down():
                return bool(super().wait_for_lock(key, timeout))
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        with self._tolerated():
            if not self._down():
                return bool(await super().await_for_lock(key, timeout))
        return True

    def is_locked(self, key: str) -> bool:
        with self._tolerated():
            if not self._down():
                return bool(super().is_locked(key))
        return False


class RedisResults(RedisDatabase):
    """Chunk results in Redis; while Redis fails, in Prefect's local result storage instead.

    A result written locally during an outage is found there again by this process; another
    process finds no cached result and runs the chunk task, whose database claim then sees the
    chunk COMPLETED and skips it.
    """

    _block_type_name = "Pledgeflow Redis Results"

    def _url(self) -> str:
        return self.connection_url.get_secret_value() if self.connection_url else ""

    def _down(self) -> bool:
        return redis_paused(self._url())

    def _failed(self, exc: BaseException) -> None:
        redis_failed(self._url(), redis_url_shown(self._url()), exc)

    @staticmethod
    def _local() -> LocalFileSystem:
        return LocalFileSystem(basepath=str(PREFECT_LOCAL_STORAGE_PATH.value()))

    def _read_local(self, path: str) -> bytes | None:
        try:
            content = self._local().read_path(path, _sync=True)  # type: ignore[call-arg]
            return content if isinstance(content, bytes) else None
        except (OSError, ValueError):
            return None

    async def aread_path(self, path: str) -> bytes:
        if not self._down():
            try:
                found = await super().aread_path(path)
                redis_answered(self._url(), redis_url_shown(self._url()))
                if isinstance(found, bytes):
                    return found
            except REDIS_ERRORS as exc:
                self._failed(exc)
        return self._read_local(path)  # type: ignore[return-value]

    @async_dispatch(aread_path)
    def read_path(self, path: str) -> bytes:
        if not self._down():
            try:
                found = super().read_path(path, _sync=True)
                redis_answered(self._url(), redis_url_shown(self._url()))
                if found is not None:
                    return bytes(found)
            except REDIS_ERRORS as exc:
                self._failed(exc)
        return self._read_local(path)  # type: ignore[return-value]

    async def awrite_path(self, path: str, content: bytes) -> bool:
        if not self._down():
            try:
                return bool(await super().awrite_path(path, content))
            except REDIS_ERRORS as exc:
                self._failed(exc)
        self._local().write_path(path, content, _sync=True)  # type: ignore[call-arg]
        return True

    @async_dispatch(awrite_path)
    def write_path(self, path: str, content: bytes) -> bool:
        if not self._down():
            try:
                return bool(super().write_path(path, content, _sync=True))
            except REDIS_ERRORS as exc:
                self._failed(exc)
        self._local().write_path(path, content, _sync=True)  # type: ignore[call-arg]
        return True


@dataclass(frozen=True)
class ResultConfig:
    """Result storage and lock manager for chunk tasks; None means Prefect's local default."""

    storage: WritableFileSystem | None
    lock_manager: LockManager | None

    @property
    def uses_redis(self) -> bool:
        """Whether results and locks go to Redis."""
        return self.storage is not None


def chunk_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str:
    """One cache key per chunk incarnation: a completed chunk is never processed again."""
    prefix = get_settings().redis_key_prefix
    return f"{prefix}-{parameters['upload_key']}-chunk-{parameters['chunk_id']}"


def redis_url_shown(url: str) -> str:
    """A Redis URL fit for logs and reports: its password masked."""
    scheme, separator, rest = url.partition("://")
    if not separator:
        return "(a Redis URL that is not one)"
    return (
        make_url(f"redis+x://{rest}")
        .render_as_string(hide_password=True)
        .replace("redis+x", scheme, 1)
    )


def result_config() -> ResultConfig:
    """Redis storage and locks when `PLEDGEFLOW_REDIS_URL` answers; local storage otherwise."""
    settings = get_settings()
    if settings.redis_url is None:
        return ResultConfig(None, None)
    url = settings.redis_url.get_secret_value()
    shown = redis_url_shown(url)
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        client.ping()
        client.close()
    except REDIS_ERRORS as exc:
        redis_failed(url, shown, exc)
        return ResultConfig(None, None)
    redis_answered(url, shown)
    name = (
        "pledgeflow-results-"
        + hashlib.sha256(f"{url}|{settings.result_ttl_seconds}".encode()).hexdigest()[:12]
    )
    # The name holds the URL and expiry, so a block saved under it is this one: loading it is
    # one read, where saving builds the JSON schema of every block type (~0.15 s of CPU in each
    # flow-run process).
    try:
        block = RedisResults.load(name)
    except ValueError:  # not saved yet on this Prefect server, or saved by other code
        block = RedisResults(connection_url=url, key_ttl=settings.result_ttl_seconds)
        # The first runs on a fresh Prefect server race to register the block's type and
        # document: the loser's 409 means it exists now, and saving again succeeds.
        Retrying(
            retry=retry_if_exception_type(ObjectAlreadyExists),
            stop=stop_after_attempt(3),
            wait=wait_random(0, 0.5),
            reraise=True,
        )(block.save, name, overwrite=True)
    lock_manager = LeasedRedisLockManager(
        hold_seconds=settings.chunk_lease_seconds, connection_url=url
    )
    return ResultConfig(block, lock_manager)


def chunk_cache_policy(config: ResultConfig) -> CachePolicy:
    """Cache chunk results by chunk; with Redis, one run at a time may hold a chunk's key."""
    policy = CacheKeyFnPolicy(cache_key_fn=chunk_cache_key)
    if config.lock_manager is not None:
        return policy.configure(
            isolation_level=IsolationLevel.SERIALIZABLE, lock_manager=config.lock_manager
        )
    return policy


def result_expiration() -> timedelta:
    """How long a chunk's cached result stays valid."""
    return timedelta(seconds=get_settings().result_ttl_seconds)
