"""Complete a chunk without writing when an earlier import of the project wrote the same rows.

A completed chunk stores a digest of its content and of every input its rows depend on
(`pledgeflow.chunk_digest`: platform, mapping, date styles, currency, the code, and which of its
rows a later row supersedes). A chunk of a later upload of the project with the same digest would
map to the same rows and, if the tables still hold what that import left, write none of them:
every row would be unchanged. It then completes at once, in one small transaction, with the
matched chunk's imported / rejected rows and errors, and every key the matched chunk counted
reported unchanged (`pledgeflow.distinct`).

When the tables still hold what the matched import left, without reading them: the matched
chunk's upload completed, and no other upload of the shop newer than it has written anything
(no chunk completed or in progress; backers are the shop's, so other projects count too). An
older upload cannot change what the newer one wrote: the position rule and the settlement keep
its rows from winning. A newer one may, so its existence stops the skip. And the chunk's own
upload changes nothing under it: a row of another chunk of it that shares a key with this
chunk's rows is superseded by this chunk's or supersedes it, which its digest (its superseded
marks) says. While an older upload still runs, a chunk must move its rows' positions forward
(`settlement.write_mode`), which is a write: no skip then.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, exists, select

from pledgeflow.counters import refresh_upload_counters
from pledgeflow.distinct import all_unchanged
from pledgeflow.status import complete_chunk
from schemas.tables import CHUNK, UPLOAD, CsvUpload, CsvUploadChunk, UploadStatus

logger = logging.getLogger(__name__)
WROTE = (UploadStatus.COMPLETED, UploadStatus.PROCESSING)


@dataclass(frozen=True)
class Skipped:
    """A chunk completed as unchanged, and the earlier chunk whose rows it matched."""

    imported_rows: int
    rejected_rows: int
    chunk_id: int
    upload_id: int


def matching_chunk(
    conn: Connection, *, upload_id: int, project_id: int, shop: str, digest: str
) -> Any | None:
    """The completed chunk of the project's latest completed upload with `digest`, while no
    other newer upload of the shop has written anything; else None."""
    match = conn.execute(
        select(
            CsvUploadChunk.id,
            CsvUploadChunk.upload_id,
            CsvUploadChunk.imported_rows,
            CsvUploadChunk.rejected_rows,
            CsvUploadChunk.errors,
            CsvUploadChunk.stats,
        )
        .join(CsvUpload, CsvUpload.id == CsvUploadChunk.upload_id)
        .where(
            CsvUploadChunk.digest == digest,
            CsvUploadChunk.status == UploadStatus.COMPLETED,
            CsvUpload.project_id == project_id,
            CsvUpload.status == UploadStatus.COMPLETED,
            CsvUpload.id < upload_id,
        )
        .order_by(CsvUpload.id.desc())
        .limit(1)
    ).first()
    if match is None or not _reusable(match.stats):
        return None
    newer = exists(
        select(CHUNK.c.id)
        .join(UPLOAD, UPLOAD.c.id == CHUNK.c.upload_id)
        .where(
            UPLOAD.c.shop == shop,
            UPLOAD.c.id > match.upload_id,
            UPLOAD.c.id != upload_id,
            CHUNK.c.status.in_(WROTE),
        )
    )
    return None if conn.scalar(select(newer)) else match


def _reusable(stats: dict[str, Any] | None) -> bool:
    """Whether a chunk's stats name its keys for every table it counted."""
    tables, keys = (stats or {}).get("tables"), (stats or {}).get("keys")
    return (
        isinstance(tables, dict)
        and isinstance(keys, dict)
        and bool(tables)
        and set(keys) == set(tables)
    )


def skip_unchanged(
    conn: Connection,
    *,
    chunk_id: int,
    upload_id: int,
    project_id: int,
    shop: str,
    digest: str,
    started: float,
) -> Skipped | None:
    """Complete the chunk as unchanged inside `conn`'s transaction when a matching chunk
    allows it (`matching_chunk`); None, with nothing written, when none does."""
    match = matching_chunk(
        conn, upload_id=upload_id, project_id=project_id, shop=shop, digest=digest
    )
    if match is None:
        return None
    stats = match.stats
    tables = {
        name: {
            "created": 0,
            "updated": 0,
            "unchanged": counts["created"] + counts["updated"] + counts["unchanged"],
            "deleted": 0,
        }
        for name, counts in stats["tables"].items()
    }
    complete_chunk(
        conn,
        chunk_id,
        imported_rows=match.imported_rows,
        rejected=(match.errors or {}).get("rejected") or [],
        rejected_rows=match.rejected_rows,
        stats={
            "tables": tables,
            "keys": all_unchanged(stats["keys"]),
            "by_code": stats.get("by_code") or {},
            "warnings": stats.get("warnings") or [],
            "seconds": round(time.perf_counter() - started, 4),
            "worker": f"{socket.gethostname()}:{os.getpid()}",
            "rows_from_cache": False,
            "unchanged_since": {"upload_id": match.upload_id, "chunk_id": match.id},
            # The same digest, so the same inputs (`chunk_digest.inputs_digest`).
            **({"inputs": stats["inputs"]} if "inputs" in stats else {}),
        },
        digest=digest,
    )
    refresh_upload_counters(conn, upload_id)
    logger.info(
        "chunk %s unchanged since upload %s (chunk %s): completed without writing rows",
        chunk_id,
        match.upload_id,
        match.id,
    )
    return Skipped(match.imported_rows, match.rejected_rows, match.id, match.upload_id)
