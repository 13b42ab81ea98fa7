"""How an import's freed memory goes back to the system: pyarrow allocates through glibc's
malloc, and the heap is trimmed after each big pass.

Pandas 3 keeps a frame's text columns in pyarrow arrays, which pyarrow allocated from its own
mimalloc pool: mimalloc kept what a chunk's frames had freed, per thread, and glibc kept what
its arenas had freed, so the import process's resident memory rose with each chunk mapped
beside another and never fell back (100,000 rows: peak 496-520 MB; 1,000,000 rows: still
rising after 100 chunks). With pyarrow on glibc's malloc and `malloc_trim` after each chunk,
staging, settlement and aggregation, what a chunk freed is returned before the next one
starts (100,000 rows: 408-420 MB). Capping glibc's arenas (`M_ARENA_MAX` 2) as well gained
nothing measurable (408-415 MB without it), so they are left as they are.
"""

from __future__ import annotations

import ctypes
from functools import cache

import pyarrow as pa


@cache
def _glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (it has `malloc_trim`); None elsewhere (musl, macOS)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


@cache
def tune_allocators() -> None:
    """Once per process, before its first upload's work: pyarrow's arrays allocated with
    malloc (`pyarrow.system_memory_pool`), so `release_freed_memory` reaches what they
    freed."""
    pa.set_memory_pool(pa.system_memory_pool())


def release_freed_memory() -> None:
    """Give the memory malloc holds free back to the system (`malloc_trim`), after a pass
    that freed much of what it allocated: a chunk, settlement, aggregation."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)
