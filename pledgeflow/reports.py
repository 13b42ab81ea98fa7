"""Read back what an upload rejected, and write it as a CSV report safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from itertools import groupby
from typing import Any, TextIO

from sqlalchemy import select

from pledgeflow.database import get_engine
from schemas.tables import CsvUploadChunk

# The columns the rejected-row report (`pledgeflow errors --csv`) puts before a row's original
# cells. A row with several failing cells lists each in `column`, `code`, `value` (quoted, cut
# to 80 characters) and `message`, in the same order, joined by REPORT_SEPARATOR.
REPORT_COLUMNS = ("row_number", "column", "code", "value", "message")
REPORT_SEPARATOR = "; "

SHOWN_CHARS = 80  # an offending value is shown cut to this many characters

# OWASP's CSV-injection list: a spreadsheet treats a cell starting with these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _chunk_ids(upload_id: int) -> list[int]:
    with get_engine().connect() as conn:
        return list(
            conn.execute(
                select(CsvUploadChunk.id)
                .where(CsvUploadChunk.upload_id == upload_id)
                .order_by(CsvUploadChunk.chunk_index)
            ).scalars()
        )


def rejected_rows(upload_id: int) -> Iterator[dict[str, Any]]:
    """Every rejected cell of an upload in file order, one chunk in memory at a time."""
    engine = get_engine()
    for chunk_id in _chunk_ids(upload_id):
        with engine.connect() as conn:
            errors = conn.execute(
                select(CsvUploadChunk.errors).where(CsvUploadChunk.id == chunk_id)
            ).scalar()
        yield from (errors or {}).get("rejected", [])


def shown_value(value: object) -> str:
    """An offending value as the terminal shows it: quoted, control characters escaped, cut to
    SHOWN_CHARS characters (`…` marks the cut)."""
    text = "" if value is None else str(value)
    cut = text[:SHOWN_CHARS] + ("…" if len(text) > SHOWN_CHARS else "")
    return json.dumps(cut, ensure_ascii=False)


def neutralize(cell: object) -> str:
    """A cell as text that a spreadsheet shows as text: a formula character first, or first
    after leading blanks (spreadsheets skip them), gets a single quote before the cell."""
    text = "" if cell is None else str(cell)
    return (
        "'" + text
        if text.lstrip().startswith(FORMULA_STARTS) or text.startswith(FORMULA_STARTS)
        else text
    )


def write_rejected_csv(upload_id: int, out: TextIO) -> int:
    """Write every rejected source row of an upload, in file order, and return how many.

    Each line holds REPORT_COLUMNS then the row's original cells (a short record padded with
    blanks to the header's width). The upload is read one chunk at a time.
    """
    writer = csv.writer(out)
    engine = get_engine()
    written = 0
    header_written = False
    for chunk_id in _chunk_ids(upload_id):
        with engine.connect() as conn:
            chunk = conn.execute(
                select(CsvUploadChunk.data, CsvUploadChunk.errors, CsvUploadChunk.first_row).where(
                    CsvUploadChunk.id == chunk_id
                )
            ).one()
        data = chunk.data or {}
        headers: Sequence[object] = data.get("headers") or []
        rows: Sequence[Sequence[object]] = data.get("rows") or []
        if not header_written:
            writer.writerow([neutralize(c) for c in (*REPORT_COLUMNS, *headers)])
            header_written = True
        rejected = (chunk.errors or {}).get("rejected", [])
        for row_number, entries in groupby(rejected, key=lambda e: int(e["row"])):
            cells = list(entries)
            offset = row_number - chunk.first_row
            source = list(rows[offset]) if 0 <= offset < len(rows) else []
            source += [""] * (len(headers) - len(source))
            reasons = [
                str(row_number),
                REPORT_SEPARATOR.join(str(e["column"]) for e in cells),
                REPORT_SEPARATOR.join(str(e["code"]) for e in cells),
                REPORT_SEPARATOR.join(shown_value(e.get("value")) for e in cells),
                REPORT_SEPARATOR.join(str(e["message"]) for e in cells),
            ]
            writer.writerow([neutralize(c) for c in (*reasons, *source)])
            written += 1
    if not header_written:
        writer.writerow(REPORT_COLUMNS)
    return written
