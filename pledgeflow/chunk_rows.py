"""A chunk's rows: read from its stored JSON and mapped with its upload's layout.

This is where a chunk's rows take their shape (with `transform`, the values and the platforms'
layouts it reads): what the row cache keys name (`chunk_digest.ROW_MODULES`). Claiming a chunk,
its status and how its rows are written are elsewhere (`chunks`, `status`, `writers`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Text, cast, select

from pledgeflow.dates import DateColumn
from pledgeflow.failures import ChunkDataError
from pledgeflow.transform import ChunkFrames, build_frames
from pledgeflow.writers.stages import StagedCopies
from schemas.layout import Layout
from schemas.mappings import ColumnMapping, MappingError
from schemas.platforms import UnknownLayoutError, UnsupportedPlatformError, resolve_layout
from schemas.tables import CsvUploadChunk

MALFORMED = "chunk data must be {headers: [...], rows: [...]}"


@dataclass(frozen=True)
class ChunkRows:
    """A chunk's rows ready to write, mapped (frames) or from the cache (COPY data), with what
    the chunk's record needs."""

    rows: ChunkFrames | StagedCopies
    platform: str
    imported_rows: int
    rejected_rows: int
    rejected: list[dict[str, Any]]
    warnings: list[dict[str, Any]]

    @classmethod
    def mapped(cls, frames: ChunkFrames, platform: str) -> ChunkRows:
        """The rows of a chunk mapped just now."""
        return cls(
            frames,
            platform,
            frames.imported_rows,
            frames.rejected_rows,
            frames.rejected,
            frames.warnings,
        )


def answers_by_value(stats: dict[str, Any] | None) -> list[int]:
    """The item columns `start_upload` found holding other values than quantities."""
    found = ((stats or {}).get("detection") or {}).get("answer_columns_by_value") or []
    return [int(index) for index in found]


def read_chunk_data(conn: Connection, chunk_id: int) -> object:
    """A chunk's stored JSON, decoded; None when there is no such chunk (or no data).

    Read as its text and decoded with the json module here, rather than by the driver's JSON
    loader: the same values (integers of any size stay exact), for about a sixth less CPU
    (the loader decodes bytes, which the json module first turns into text itself). orjson,
    measured too, decoded a chunk no faster (10,000 rows, 34 columns of short text)."""
    text = conn.scalar(select(cast(CsvUploadChunk.data, Text)).where(CsvUploadChunk.id == chunk_id))
    return None if text is None else json.loads(text)


def chunk_table(data: object) -> tuple[list[Any], list[Any]]:
    """The header row and rows of a chunk's stored JSON; ChunkDataError when it is not
    `{headers: [...], rows: [...]}` (the web app writes it, so nothing vouches for it)."""
    headers = data.get("headers") if isinstance(data, dict) else None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(headers, list) or not isinstance(rows, list):
        raise ChunkDataError("malformed_chunk", MALFORMED)
    return headers, rows


def chunk_layout(
    headers: object,
    platform: str | None,
    mapping: dict[str, Any] | None,
    value_answers: list[int] | None = None,
) -> Layout:
    """The layout a chunk's rows are read with: its upload's mapping, else its platform, with
    the item columns the upload's values make answers (`value_answers`) kept as answers."""
    if not isinstance(headers, list):
        raise ChunkDataError("malformed_chunk", MALFORMED)
    try:
        column_mapping = ColumnMapping.from_dict(mapping) if mapping else None
        layout = resolve_layout(
            tuple(str(h) for h in headers),
            None if column_mapping else platform,
            column_mapping,
        )
    except (UnknownLayoutError, UnsupportedPlatformError, MappingError) as exc:
        raise ChunkDataError(exc.code, str(exc)) from exc
    return layout.with_value_answers(value_answers or [])


def map_chunk(
    data: object,
    platform: str | None,
    mapping: dict[str, Any] | None,
    first_row: int,
    currency: str | None,
    dates: dict[str, DateColumn] | None = None,
    value_answers: list[int] | None = None,
) -> ChunkRows:
    """The chunk's rows mapped and validated, with the platform its layout belongs to."""
    headers, rows = chunk_table(data)
    layout = chunk_layout(headers, platform, mapping, value_answers)
    return ChunkRows.mapped(
        build_frames(headers, rows, first_row, layout, currency, dates=dates), layout.platform
    )
