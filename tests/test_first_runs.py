"""A burst of the first runs on a fresh Prefect server: none fails registering the results block."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from prefect.client.orchestration import get_client
from prefect.exceptions import ObjectNotFound

from pledgeflow.results import RedisResults, result_config


@pytest.mark.usefixtures("prefect_harness")
def test_first_runs_at_once_all_save_the_results_block(redis_client: redis.Redis) -> None:
    slug = RedisResults.get_block_type_slug()
    with get_client(sync_client=True) as client:
        try:
            block_type = client.read_block_type_by_slug(slug)
        except ObjectNotFound:
            pass
        else:
            for document in client.read_block_documents_by_type(slug):
                client.delete_block_document(document.id)
            client.delete_block_type(block_type.id)

    # As on a fresh server: eight runs register the type and save the document at once.
    with ThreadPoolExecutor(max_workers=8) as pool:
        configs = list(pool.map(lambda _: result_config(), range(8)))

    assert all(config.storage is not None for config in configs)
    with get_client(sync_client=True) as client:
        assert len(client.read_block_documents_by_type(slug)) == 1
