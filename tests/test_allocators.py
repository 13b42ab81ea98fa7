"""An import's frames allocate where `malloc_trim` can return what they free."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from pledgeflow.allocators import release_freed_memory, tune_allocators


def test_text_columns_allocate_with_malloc_and_freed_memory_is_released() -> None:
    tune_allocators()
    assert pa.default_memory_pool().backend_name == "system"
    pool = pa.system_memory_pool()
    before = pool.bytes_allocated()
    column = pd.Series([f"backer-{i}@example.com" for i in range(10_000)], dtype="str")
    assert pool.bytes_allocated() > before  # pandas 3's text column lives in malloc's heap
    del column
    release_freed_memory()
    assert pool.bytes_allocated() == before
