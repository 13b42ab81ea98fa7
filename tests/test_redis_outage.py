"""Redis is a cache: while it is lost, chunk results go to local storage and its locks are
granted (the database claim guards each chunk); once it answers again, later chunks and runs
use it again. Each change is logged once."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
import redis
from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

from pledgeflow import redis_health
from pledgeflow.results import LeasedRedisLockManager, RedisResults
from tests.services import OwnRedis

pytestmark = pytest.mark.services

# After an error a process leaves Redis alone for 30 s; one second keeps the test short.
PAUSE_SECONDS = 1.0


def test_results_and_locks_go_back_to_redis_once_it_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(redis_health, "PAUSE_SECONDS", PAUSE_SECONDS)
    server = OwnRedis()
    results = RedisResults(connection_url=server.url, key_ttl=60)
    locks = LeasedRedisLockManager(hold_seconds=60, connection_url=server.url)
    try:
        with (
            temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: tmp_path}),
            caplog.at_level(logging.WARNING, logger=redis_health.__name__),
        ):
            assert results.write_path("before", b"1")
            assert redis.Redis.from_url(server.url).get("before") == b"1"

            server.kill()
            assert results.write_path("during", b"2")
            assert (tmp_path / "during").read_bytes() == b"2"
            assert results.read_path("during") == b"2"
            assert locks.acquire_lock("chunk-1", holder="run-a")

            server = OwnRedis(port=server.port)  # back, empty, where it was
            time.sleep(PAUSE_SECONDS + 0.5)
            assert results.write_path("after", b"3")
            assert results.read_path("after") == b"3"
            back = redis.Redis.from_url(server.url)
            assert back.get("after") == b"3"
            assert not (tmp_path / "after").exists()
            assert locks.acquire_lock("chunk-2", holder="run-a")
            assert back.exists("lock:chunk-2")
            # A lock taken in Redis again holds off another run.
            assert not locks.acquire_lock("chunk-2", holder="run-b", acquire_timeout=0.5)
    finally:
        server.kill()

    said = [r.getMessage() for r in caplog.records if r.name == redis_health.__name__]
    assert len(said) == 2, said
    assert "unreachable" in said[0]
    assert "answers again" in said[1]
