"""Where chunk task results persist (Redis, or local storage) and who serves their locks."""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import redis
from prefect.cache_policies import CacheKeyFnPolicy, CachePolicy
from prefect.context import TaskRunContext
from prefect.filesystems import WritableFileSystem
from prefect.locking.protocol import LockManager
from prefect.transactions import IsolationLevel
from prefect_redis import RedisDatabase, RedisLockManager
from sqlalchemy.engine import make_url

from pledgeflow.settings import get_settings

logger = logging.getLogger(__name__)


class LeasedRedisLockManager(RedisLockManager):
    """Redis locks that expire: a worker killed while holding one cannot block retries forever.

    prefect-redis takes locks with no hold timeout unless the caller passes one, and Prefect's
    transactions pass none; this lock manager supplies the chunk lease as the default.
    """

    def __init__(self, *, hold_seconds: float, **kwargs: Any) -> None:
        self.hold_seconds = hold_seconds
        super().__init__(**kwargs)

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "hold_seconds": self.hold_seconds}

    def acquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        return bool(
            super().acquire_lock(key, holder, acquire_timeout, hold_timeout or self.hold_seconds)
        )

    async def aacquire_lock(
        self,
        key: str,
        holder: str,
        acquire_timeout: float | None = None,
        hold_timeout: float | None = None,
    ) -> bool:
        return bool(
            await super().aacquire_lock(
                key, holder, acquire_timeout, hold_timeout or self.hold_seconds
            )
        )


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
    except (redis.RedisError, OSError) as exc:
        logger.warning(
            "Redis at %s is unreachable (%s): chunk results go to local storage, without "
            "Redis locks; the database claim still guards every chunk",
            shown,
            type(exc).__name__,
        )
        return ResultConfig(None, None)
    block = RedisDatabase(connection_url=url, key_ttl=settings.result_ttl_seconds)
    name = (
        "pledgeflow-results-"
        + hashlib.sha256(f"{url}|{settings.result_ttl_seconds}".encode()).hexdigest()[:12]
    )
    block.save(name, overwrite=True)
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
