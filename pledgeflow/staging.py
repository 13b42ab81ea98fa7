"""Stream a CSV file into an upload row and its chunk rows, as the web app would store it."""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pledgeflow.database import transaction
from pledgeflow.settings import get_settings
from schemas.mappings import ColumnMapping, MappingError
from schemas.platforms import PLATFORMS
from schemas.tables import PROJECT, CsvUpload, CsvUploadChunk

logger = logging.getLogger(__name__)
# Chunk rows are written in batches of at least this many source rows (a whole number of
# chunks): few round trips for small chunks, and never more than one large chunk in memory.
ROWS_PER_INSERT = 8000


class StagingError(ValueError):
    """The file cannot become an upload; nothing was stored."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def ensure_project(conn: Connection, shop: str, name: str, currency: str | None) -> int:
    """Return the id of the shop's project, creating it if new (currency set when given)."""
    table = PROJECT
    insert_ = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        insert_(table)
        .values(shop=shop, name=name, currency=currency)
        .on_conflict_do_nothing(index_elements=["shop", "name"])
    )
    project_id = conn.execute(
        select(table.c.id).where(table.c.shop == shop, table.c.name == name)
    ).scalar_one()
    if currency is not None:
        conn.execute(update(table).where(table.c.id == project_id).values(currency=currency))
    return int(project_id)


def _encoding_of(path: Path) -> str:
    """UTF-16 when the file starts with its byte-order mark, else UTF-8 (BOM or not)."""
    with path.open("rb") as handle:
        start = handle.read(2)
    return "utf-16" if start in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"


def _records(path: Path, max_cell_chars: int) -> Iterator[list[str]]:
    # The csv module's field limit is process-wide; it bounds memory on an unclosed quote.
    csv.field_size_limit(max_cell_chars)
    with path.open(encoding=_encoding_of(path), newline="") as handle:
        for record in csv.reader(handle, strict=True):
            if record:  # a blank line is no record
                yield record


def stage_file(
    path: Path,
    *,
    shop: str,
    project: str,
    platform: str | None = None,
    chunk_size: int = 10_000,
    currency: str | None = None,
    mapping: ColumnMapping | None = None,
) -> int:
    """Create the project if new, then the upload and its chunks in one transaction.

    The file is read as a stream, `chunk_size` records at a time; a file that cannot be read
    as CSV stores nothing, and neither does a `mapping` naming a header the file lacks (the
    error lists the headers it has).
    """
    if platform is not None and platform not in PLATFORMS:
        raise StagingError(
            "unsupported_platform",
            f"unsupported platform {platform!r}; supported: {', '.join(PLATFORMS)}",
        )
    if not path.is_file():
        raise StagingError("file_not_found", f"no such file: {path}")
    limits = get_settings()
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise StagingError(
            "limit_exceeded",
            f"{path.name} is {size} bytes, over the limit of {limits.max_file_bytes} "
            "(PLEDGEFLOW_MAX_FILE_BYTES)",
        )
    records = _records(path, limits.max_cell_chars)
    try:
        headers = next(records, None)
        if headers is None:
            raise StagingError("empty_file", f"{path.name} is empty: no header row")
        check_header(headers, limits.max_columns)
        if mapping is not None:
            try:
                mapping.check_headers(headers)
            except MappingError as exc:
                raise StagingError(exc.code, str(exc)) from exc
        with transaction() as conn:
            project_id = ensure_project(conn, shop, project, currency)
            upload_id = conn.execute(
                insert(CsvUpload)
                .values(
                    project_id=project_id,
                    shop=shop,
                    filename=path.name,
                    platform="custom" if mapping is not None else platform,
                    mapping=mapping.as_dict() if mapping is not None else None,
                )
                .returning(CsvUpload.id)
            ).scalar_one()
            total = _write_chunks(conn, upload_id, headers, records, chunk_size)
    except UnicodeDecodeError as exc:
        raise StagingError(
            "invalid_encoding",
            f"{path.name} is not UTF-8 or UTF-16 text (undecodable byte at offset {exc.start}); "
            "a file saved as Latin-1 or Windows-1252 must be re-saved as UTF-8",
        ) from exc
    except csv.Error as exc:
        if "field larger than field limit" in str(exc):
            raise StagingError(
                "limit_exceeded",
                f"{path.name} has a cell longer than {limits.max_cell_chars} characters "
                "(PLEDGEFLOW_MAX_CELL_CHARS), or a quote that is never closed",
            ) from exc
        raise StagingError("malformed_csv", f"{path.name} is not valid CSV: {exc}") from exc
    logger.info("staged upload %s: %s rows", upload_id, total)
    return int(upload_id)


def check_header(headers: list[str], max_columns: int) -> None:
    """Refuse a header row wider than the limit, or one no table can store."""
    if len(headers) > max_columns:
        raise StagingError(
            "limit_exceeded",
            f"the header has {len(headers)} columns, over the limit of {max_columns} "
            "(PLEDGEFLOW_MAX_COLUMNS)",
        )
    if any("\x00" in h for h in headers):
        raise StagingError("invalid_character", "the header row holds a NUL character")


def _write_chunks(
    conn: Connection,
    upload_id: int,
    headers: list[str],
    records: Iterator[list[str]],
    chunk_size: int,
) -> int:
    pending: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    total = 0
    index = 0

    def close_chunk() -> None:
        nonlocal rows, index
        pending.append(
            {
                "upload_id": upload_id,
                "chunk_index": index,
                "data": {"headers": headers, "rows": rows},
                "first_row": total - len(rows) + 1,
                "row_count": len(rows),
            }
        )
        rows = []
        index += 1
        if sum(chunk["row_count"] for chunk in pending) >= ROWS_PER_INSERT:
            conn.execute(insert(CsvUploadChunk), pending)
            pending.clear()

    max_rows = get_settings().max_rows
    for record in records:
        rows.append(record)
        total += 1
        if total > max_rows:
            raise StagingError(
                "limit_exceeded",
                f"the file has more than {max_rows} data rows (PLEDGEFLOW_MAX_ROWS)",
            )
        if len(rows) >= chunk_size:
            close_chunk()
    if rows or index == 0:
        close_chunk()
    if pending:
        conn.execute(insert(CsvUploadChunk), pending)
    return total
