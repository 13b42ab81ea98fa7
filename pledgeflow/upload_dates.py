"""Decide each date column's style once per upload, so that every chunk parses it alike.

The style comes from the column's first non-blank values in file order; where it leaves day and
month in doubt (every day so far 12 or less), later chunks are read until one value settles it.
The decision is stored on the upload (`stats.detection.dates`) and read by each chunk.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select

from pledgeflow.dates import SAMPLE_VALUES, DateColumn, DateStyleError, infer_date_column

__all__ = ["DateStyleError", "dates_report", "decide_dates", "stored_dates"]
from pledgeflow.dates import order_evidence as _order_evidence
from schemas.layout import DATE_FIELDS, Layout
from schemas.tables import CsvUploadChunk

logger = logging.getLogger(__name__)
# A column still without a value after this many rows is left to each chunk to infer.
SCAN_ROWS = 100_000


def _column(rows: list[Any], index: int) -> pd.Series:
    cells = [
        str(row[index]) if isinstance(row, list) and len(row) > index and row[index] else ""
        for row in rows
    ]
    return pd.Series(cells, dtype=object)


def decide_dates(conn: Connection, upload_id: int, layout: Layout) -> dict[str, DateColumn]:
    """The style of each date field of the upload, by field name.

    Raises DateStyleError for a column none of whose first values is a date in any accepted
    style: that is the file's format, not bad rows.
    """
    fields = {name: layout.fields[name] for name in DATE_FIELDS if name in layout.fields}
    samples: dict[str, list[str]] = {name: [] for name in fields}
    decided: dict[str, DateColumn] = {}
    settled: set[str] = set()  # decided with no day/month doubt left
    chunk_ids = conn.execute(
        select(CsvUploadChunk.id)
        .where(CsvUploadChunk.upload_id == upload_id)
        .order_by(CsvUploadChunk.chunk_index)
    ).scalars()
    scanned = 0
    for chunk_id in list(chunk_ids):
        # A column with no value in the first SCAN_ROWS rows is left to each chunk.
        open_fields = {
            name: index
            for name, index in fields.items()
            if name not in settled and (name in decided or samples[name] or scanned < SCAN_ROWS)
        }
        if not open_fields:
            break
        data = conn.execute(select(CsvUploadChunk.data).where(CsvUploadChunk.id == chunk_id))
        document = data.scalar()
        rows = document.get("rows") if isinstance(document, dict) else None
        if not isinstance(rows, list):
            continue
        scanned += len(rows)
        for name, index in open_fields.items():
            cells = _column(rows, index)
            if name not in decided:
                sample = samples[name]
                known = set(sample)
                for cell in cells[cells.str.strip() != ""].str.strip().drop_duplicates():
                    if len(sample) >= SAMPLE_VALUES:
                        break
                    if cell not in known:
                        sample.append(cell)
                        known.add(cell)
                if len(sample) < SAMPLE_VALUES and not (sample and scanned >= SCAN_ROWS):
                    continue
                decided[name] = _infer(layout, name, sample)
            evidence = _order_evidence(cells, decided[name])
            if evidence is not None or not decided[name].ambiguous:
                if evidence is not None and evidence != decided[name].order:
                    decided[name] = decided[name].swapped()
                decided[name] = DateColumn(decided[name].formats, decided[name].zone_names)
                settled.add(name)
    for name, sample in samples.items():
        if name not in decided and sample:
            decided[name] = _infer(layout, name, sample)
    return decided


def _infer(layout: Layout, name: str, sample: list[str]) -> DateColumn:
    column = infer_date_column(pd.Series(sample, dtype=object))
    if column is None:
        raise DateStyleError(layout.header_of(name), sample[0][:80])
    return column


def stored_dates(stats: dict[str, Any] | None) -> dict[str, DateColumn]:
    """The date styles an upload's `stats` hold (none for an upload started before they were)."""
    stored = ((stats or {}).get("detection") or {}).get("dates") or {}
    out = {}
    for name, data in stored.items():
        try:
            out[str(name)] = DateColumn.from_dict(data)
        except (ValueError, AttributeError, TypeError):
            logger.info("ignored a stored date style of another shape")
    return out


def dates_report(layout: Layout, dates: dict[str, DateColumn]) -> dict[str, dict[str, object]]:
    """The decision as `stats.detection.dates` stores it: per field, its column and style."""
    return {
        name: {"column": layout.header_of(name), **column.as_dict()}
        for name, column in dates.items()
    }
