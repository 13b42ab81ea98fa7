"""Stream a CSV file into an upload row and its chunk rows, as the web app would store it."""

from __future__ import annotations

import csv
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import charset_normalizer
from sqlalchemy import Connection, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from pledgeflow.allocators import release_freed_memory, tune_allocators
from pledgeflow.collector import gc_paused
from pledgeflow.counters import refresh_upload_counters
from pledgeflow.database import first_value, transaction
from pledgeflow.import_paths import ImportPathError, resolve_import_path
from pledgeflow.quantity_columns import QuantityWatch, candidate_columns
from pledgeflow.settings import get_settings
from schemas.mappings import ColumnMapping, MappingError
from schemas.platforms import (
    PLATFORMS,
    UnknownLayoutError,
    UnsupportedPlatformError,
    resolve_layout,
)
from schemas.tables import PROJECT, CsvUpload, CsvUploadChunk

logger = logging.getLogger(__name__)
# Chunk rows are written in batches of at least this many source rows (a whole number of
# chunks): few round trips for small chunks, and never more than one large chunk in memory.
ROWS_PER_INSERT = 8000
# The most mess (charset-normalizer's chaos, 0-1) a detected encoding may leave in the text.
MAX_CHAOS = 0.1
# The least share of its text that must read as one language (charset-normalizer's coherence).
MIN_COHERENCE = 0.2


class StagingError(ValueError):
    """The file cannot become an upload; nothing was stored."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint


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


def detected_encoding(path: Path) -> str | None:
    """The encoding charset-normalizer finds for a file that is not UTF-8, when it is sure.

    Sure means a best match with at most MAX_CHAOS of mess whose text reads as some language
    (MIN_COHERENCE); several single-byte encodings often tie on that, and then the tie must
    decode alike, or include Windows-1252 (what Excel writes on Windows in the West), else the
    file stays refused."""
    matches = [
        m
        for m in charset_normalizer.from_bytes(path.read_bytes())
        if m.chaos <= MAX_CHAOS
        and m.coherence >= MIN_COHERENCE
        and m.encoding not in ("utf_8", "ascii")
    ]
    if not matches:
        return None
    best = matches[0]
    tied = [m for m in matches if (m.chaos, m.coherence) == (best.chaos, best.coherence)]
    if any(m.encoding == "cp1252" for m in tied):
        return "cp1252"
    if len({str(m) for m in tied}) == 1:
        return str(best.encoding)
    return None


def _records(path: Path, max_cell_chars: int, encoding: str) -> Iterator[list[str]]:
    # The csv module's field limit is process-wide; it bounds memory on an unclosed quote.
    csv.field_size_limit(max_cell_chars)
    with path.open(encoding=encoding, newline="") as handle:
        reader = csv.reader(handle, strict=True)
        records = 0  # yielded so far, the header included: the next data row's number
        next_line = 1  # the physical line the next record starts on
        try:
            for record in reader:
                if record:  # a blank line is no record
                    records += 1
                    yield record
                next_line = reader.line_num + 1
        except csv.Error as exc:
            if "unexpected end of data" not in str(exc):
                raise
            where = f"data row {records}" if records else "the header row"
            raise StagingError(
                "truncated_file",
                f"{path.name} ends inside a quoted field that opens on line {next_line} "
                f"({where}): the file looks truncated, or that quote is never closed",
                "upload or export the file again in full; if it is complete, close that quote",
            ) from None


def stage_file(
    path: Path,
    *,
    shop: str,
    project: str,
    platform: str | None = None,
    chunk_size: int | None = None,
    currency: str | None = None,
    mapping: ColumnMapping | None = None,
    root_required: bool = False,
    on_rows: Callable[[int], None] | None = None,
    flow_run_id: str | None = None,
) -> int:
    """Create the project if new, then the upload and its chunks in one transaction.

    Given the `flow_run_id` of the run staging it, the upload is recorded as that run's, and
    the run staging again (Prefect's Retry re-runs the whole flow) gets the same upload back
    without reading the file: one run, one upload.

    The path must be a regular file (inside PLEDGEFLOW_IMPORT_ROOT when set, or when
    `root_required`); it is read as a stream, `chunk_size` records at a time (by default
    PLEDGEFLOW_CHUNK_SIZE, the one default of every entry point). A file that
    cannot be read as CSV stores nothing, and neither does a `mapping` naming a header the
    file lacks (the error lists the headers it has). A file that is not UTF-8 or UTF-16 is
    read again in the encoding `detected_encoding` is sure of, which the upload's
    `stats["encoding"]` names. `on_rows` is told the data rows read so far, chunk by chunk;
    the upload's totals and the time staging took are stored with it.
    """
    if flow_run_id is not None and (staged := upload_of_flow_run(flow_run_id)) is not None:
        logger.info("upload %s was staged by this flow run already, resumed", staged)
        return staged
    started = time.perf_counter()
    tune_allocators()
    if chunk_size is None:
        chunk_size = get_settings().chunk_size
    args = (path, shop, project, platform, chunk_size, currency, mapping, root_required)
    try:
        return _stage(*args, None, on_rows, started, flow_run_id)
    except StagingError as exc:
        if exc.code != "invalid_encoding":
            raise
        encoding = detected_encoding(resolve_import_path(path, root_required=root_required))
        if encoding is None:
            raise
        logger.info("a file that is not UTF-8 was staged as %s", encoding)
        return _stage(*args, encoding, on_rows, started, flow_run_id)
    finally:
        release_freed_memory()  # the file's records, streamed into chunks


def upload_of_flow_run(flow_run_id: str) -> int | None:
    """The upload a flow run staged, if it staged one."""
    found = first_value(
        select(CsvUpload.id).where(CsvUpload.flow_run_id == flow_run_id).order_by(CsvUpload.id)
    )
    return None if found is None else int(found)


def _stage(
    path: Path,
    shop: str,
    project: str,
    platform: str | None,
    chunk_size: int,
    currency: str | None,
    mapping: ColumnMapping | None,
    root_required: bool,
    encoding: str | None,
    on_rows: Callable[[int], None] | None,
    started: float,
    flow_run_id: str | None,
) -> int:
    if platform is not None and platform not in PLATFORMS:
        raise StagingError(
            "unsupported_platform",
            f"unsupported platform {platform!r}; supported: {', '.join(PLATFORMS)}",
        )
    given = path
    try:
        path = resolve_import_path(path, root_required=root_required)
    except ImportPathError as exc:
        raise StagingError(exc.code, str(exc), exc.hint) from None
    limits = get_settings()
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise StagingError(
            "limit_exceeded",
            f"{path.name} is {size} bytes, over the limit of {limits.max_file_bytes} "
            "(PLEDGEFLOW_MAX_FILE_BYTES)",
        )
    records = _records(path, limits.max_cell_chars, encoding or _encoding_of(path))
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
                    filename=given.name,
                    platform="custom" if mapping is not None else platform,
                    mapping=mapping.as_dict() if mapping is not None else None,
                    flow_run_id=flow_run_id,
                    stats=(
                        {"encoding": {"name": encoding, "detected": True}} if encoding else None
                    ),
                )
                .returning(CsvUpload.id)
            ).scalar_one()
            watch = QuantityWatch(_candidates(headers, platform, mapping))
            with gc_paused():
                total = _write_chunks(conn, upload_id, headers, records, chunk_size, watch, on_rows)
            stats: dict[str, Any] = (
                {"encoding": {"name": encoding, "detected": True}} if encoding else {}
            )
            if watch.candidates:
                stats["items_block"] = watch.decision()
            stats["staging_seconds"] = round(time.perf_counter() - started, 3)
            conn.execute(update(CsvUpload).where(CsvUpload.id == upload_id).values(stats=stats))
            refresh_upload_counters(conn, upload_id)
    except UnicodeDecodeError as exc:
        raise StagingError(
            "invalid_encoding",
            f"{path.name} is not UTF-8 or UTF-16 text (undecodable byte at offset {exc.start}), "
            "and its encoding could not be told with confidence (a file saved as Latin-1 or "
            "Windows-1252 with too little text to tell)",
            "re-save it as UTF-8",
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


def _candidates(
    headers: list[str], platform: str | None, mapping: ColumnMapping | None
) -> list[int]:
    """The item columns whose values decide whether they are items, for a known layout."""
    try:
        return candidate_columns(resolve_layout(tuple(headers), platform, mapping))
    except (UnknownLayoutError, UnsupportedPlatformError, MappingError):
        return []  # the upload fails at start, saying why


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
    watch: QuantityWatch,
    on_rows: Callable[[int], None] | None = None,
) -> int:
    pending: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    total = 0
    index = 0

    def close_chunk() -> None:
        nonlocal rows, index
        watch.see(rows)
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
        if on_rows is not None:
            on_rows(total)
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
