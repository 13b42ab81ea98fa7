"""One write path: set-based writers, one per table, that turn a chunk's staged rows into
upserts on each table's natural key, with the same statements on PostgreSQL and SQLite.

A chunk's canonical rows are loaded into temporary tables (`stages`: COPY on PostgreSQL, an
executemany on SQLite), then written table by table in dependency order (products, new
backers, pledges, surveys, inventory, then the backers that existed before the chunk) inside
the caller's transaction. Each writer's module states its conflict rule; `positions` states
the position rule backers and pledges obey, `dialects` the few things the two dialects say
differently. Every writer leaves a row equal to what is stored unwritten, takes row locks in
key order so that concurrent chunks cannot deadlock, and records on the staged rows what it
did (the inventory, which no later writer reads, returns its written keys instead), from which
the created / updated / unchanged counts and keys are read.
"""

from pledgeflow.writers.chunk import write_chunk
from pledgeflow.writers.counts import TableCounts, WriteCounts, WriteTarget
from pledgeflow.writers.stages import STAGES, StagedCopies, copy_encoding, loads_by_copy

__all__ = [
    "STAGES",
    "StagedCopies",
    "TableCounts",
    "WriteCounts",
    "WriteTarget",
    "copy_encoding",
    "loads_by_copy",
    "write_chunk",
]
