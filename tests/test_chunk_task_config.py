"""The chunk task's result storage and locks are configured once per process, not per run: a
second run in the same process reuses them without asking the Prefect API or Redis again; a
process that found Redis unreachable asks again on its next run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pledgeflow import results
from tasks import chunks
from tests.helpers import configure


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """No chunk task configured yet in this process; counts the configurations made."""
    monkeypatch.setattr(chunks, "_configured", {})
    made: list[int] = []
    real = results.result_config

    def counted() -> results.ResultConfig:
        made.append(1)
        return real()

    monkeypatch.setattr(chunks, "result_config", counted)
    yield made


@pytest.mark.usefixtures("prefect_harness")
def test_the_chunk_task_is_configured_once_per_process(fresh_process: list[int]) -> None:
    first = chunks.configured_chunk_task()
    second = chunks.configured_chunk_task()

    assert second is first
    assert len(fresh_process) == 1
    assert first.result_storage is not None  # Redis, as the session configures it


@pytest.mark.usefixtures("prefect_harness")
def test_a_process_that_found_redis_unreachable_asks_again(
    fresh_process: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, redis_url="redis://127.0.0.1:1/0")  # nothing listens there

    lost = chunks.configured_chunk_task()
    again = chunks.configured_chunk_task()

    assert lost.result_storage is None  # Prefect's local storage while Redis is unreachable
    assert again is not lost
    assert len(fresh_process) == 2
