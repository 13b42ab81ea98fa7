"""Settle an upload before its chunks run: the rows later rows supersede, and its currency.

Chunks commit in any order, and a row equal to what is stored is not written, so a position
can no longer be recorded by rewriting an unchanged row. Instead, once an upload is staged
(every chunk exists), one pass over its keys marks each row whose pledge key or email a later
valid row holds: of the same upload, or of a newer upload of the project (which wins whenever
it runs). A chunk then never writes a superseded pledge, and only creates a superseded backer
if it is missing. The same pass decides the currency of bare symbols and plain numbers once,
so every chunk agrees: the project's, else the ISO code the file's amounts carry (which the
project then remembers), else none, with a warning naming what was stored.
"""

from __future__ import annotations

import logging
import re
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, exists, select, update

from pledgeflow.database import get_engine, transaction
from pledgeflow.dates import DateColumn
from pledgeflow.failures import ChunkDataError
from pledgeflow.transform import rejected_rows, row_keys
from pledgeflow.upload_dates import stored_dates
from pledgeflow.values import MONEY_PATTERN, SYMBOL_CURRENCIES
from schemas.layout import DATE_FIELDS, MONEY_FIELDS, Layout
from schemas.tables import CHUNK, PROJECT, UPLOAD, CsvUpload, CsvUploadChunk, UploadStatus

logger = logging.getLogger(__name__)
ISO_CODE = re.compile(r"[A-Z]{3}")
KINDS = ("pledge", "backer")
# The most rows whose checks run in one call while settling: a chunk's worth keeps the rows
# held at once (and the frames built of them) no larger than a chunk task's.
CHECK_ROWS = 10_000


@dataclass
class _Chunk:
    id: int
    first_row: int
    row_count: int


@dataclass
class _Keys:
    """Where each pledge key and email occurs in one upload: row numbers in file order."""

    rows: dict[str, dict[str, list[int]]] = field(
        default_factory=lambda: {kind: defaultdict(list) for kind in KINDS}
    )

    def add(self, row: int, pledge_key: str, email: str) -> None:
        self.rows["pledge"][pledge_key].append(row)
        self.rows["backer"][email].append(row)


def _chunks(conn: Connection, upload_id: int) -> list[_Chunk]:
    found = conn.execute(
        select(CsvUploadChunk.id, CsvUploadChunk.first_row, CsvUploadChunk.row_count)
        .where(CsvUploadChunk.upload_id == upload_id)
        .order_by(CsvUploadChunk.chunk_index)
    ).all()
    return [_Chunk(*row) for row in found]


def _records(conn: Connection, chunk: _Chunk) -> Iterator[tuple[int, list[str], Sequence[Any]]]:
    """(data-row number, headers, record) of every row of a chunk."""
    data = conn.scalar(select(CsvUploadChunk.data).where(CsvUploadChunk.id == chunk.id))
    headers = data.get("headers") if isinstance(data, dict) else None
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(headers, list) or not isinstance(rows, list):
        return
    for offset, record in enumerate(rows):
        yield chunk.first_row + offset, headers, record


def _valid_rows(
    conn: Connection,
    chunks: list[_Chunk],
    layout: Layout,
    dates: Mapping[str, DateColumn],
    wanted: set[int],
) -> set[int]:
    """Which of the `wanted` data rows `build_frames` imports (the others it rejects).

    Only the row checks run (`rejected_rows`), over the wanted rows of several chunks at once
    (up to CHECK_ROWS, while their headers agree): each call has a fixed cost. When a date
    field has no style decided for the upload, each chunk's rows go alone, as each chunk
    infers its own."""
    together = all(name in dates for name in DATE_FIELDS if name in layout.fields)
    valid: set[int] = set()
    numbers: list[int] = []
    records: list[Sequence[Any]] = []
    headers: list[str] = []

    def check() -> None:
        if records:
            rejected = rejected_rows(headers, records, layout, dates=dates, row_numbers=numbers)
            valid.update(row for row in numbers if row not in rejected)
        numbers.clear()
        records.clear()

    for chunk in chunks:
        last = chunk.first_row + chunk.row_count
        if not any(chunk.first_row <= row < last for row in wanted):
            continue
        for row, chunk_headers, record in _records(conn, chunk):
            if chunk_headers != headers:
                check()
                headers = chunk_headers
            if row in wanted:
                numbers.append(row)
                records.append(record)
        if not together or len(records) >= CHECK_ROWS:
            check()
    check()
    return valid


@dataclass
class Settlement:
    """What settling an upload found."""

    superseded: dict[int, dict[str, list[int]]]
    currency: str | None
    warnings: list[dict[str, Any]]

    def counts(self) -> dict[str, int]:
        """Superseded rows per kind, for stats and logs."""
        return {k: sum(len(m[k]) for m in self.superseded.values()) for k in KINDS}


def settle_upload(
    upload_id: int,
    layout: Layout,
    dates: Mapping[str, DateColumn] | None = None,
    *,
    dry_run: bool = False,
) -> Settlement:
    """Mark each chunk's superseded rows, decide the upload's currency, record both.

    The marks go to `csv_upload_chunk.superseded`, the currency and its warnings to
    `stats["settled"]` (aggregation adds the warnings to `stats["warnings"]`); unless
    `dry_run`, a currency the file's ISO codes establish becomes the project's, if it had none.
    """
    engine = get_engine()
    with engine.connect() as conn:
        upload = conn.execute(
            select(UPLOAD.c.project_id, UPLOAD.c.stats, PROJECT.c.currency)
            .join(PROJECT, PROJECT.c.id == UPLOAD.c.project_id)
            .where(UPLOAD.c.id == upload_id)
        ).one()
        chunks = _chunks(conn, upload_id)
        keys = _Keys()
        cells: Counter[str] = Counter()
        money_at = [layout.fields[f] for f in MONEY_FIELDS if f in layout.fields]
        for chunk in chunks:
            for row, _, record in _records(conn, chunk):
                found = row_keys(layout, record)
                if found is None:
                    continue
                text, pledge_key, email = found
                keys.add(row, pledge_key, email)
                if upload.currency is None:
                    cells.update(text[i] for i in money_at)
        later = _later_keys(conn, upload_id, upload.project_id, keys)
        superseded = _superseded(conn, chunks, layout, dates or {}, keys, later)
    currency, warnings = _currency(upload.currency, cells)
    settlement = Settlement(superseded, currency, warnings)
    with transaction(engine) as conn:
        conn.execute(
            update(CsvUploadChunk)
            .where(CsvUploadChunk.upload_id == upload_id)
            .values(superseded={kind: [] for kind in KINDS})
        )
        for chunk_id, marks in sorted(superseded.items()):
            conn.execute(
                update(CsvUploadChunk).where(CsvUploadChunk.id == chunk_id).values(superseded=marks)
            )
        if currency is not None and upload.currency is None and not dry_run:
            conn.execute(
                update(PROJECT)
                .where(PROJECT.c.id == upload.project_id, PROJECT.c.currency.is_(None))
                .values(currency=currency)
            )
        current = conn.scalar(select(CsvUpload.stats).where(CsvUpload.id == upload_id))
        conn.execute(
            update(CsvUpload)
            .where(CsvUpload.id == upload_id)
            .values(
                stats={
                    **(current or {}),
                    "settled": {
                        "currency": currency,
                        "superseded": settlement.counts(),
                        "warnings": warnings,
                    },
                }
            )
        )
    logger.info(
        "upload %s settled: %s superseded pledge rows, %s superseded backer rows, currency %s",
        upload_id,
        *settlement.counts().values(),
        currency,
    )
    return settlement


def _superseded(
    conn: Connection,
    chunks: list[_Chunk],
    layout: Layout,
    dates: Mapping[str, DateColumn],
    keys: _Keys,
    later: dict[str, set[str]],
) -> dict[int, dict[str, list[int]]]:
    """Per chunk, the rows whose key a later valid row (or a newer upload) holds."""
    repeated = {
        kind: {k: rows for k, rows in keys.rows[kind].items() if len(rows) > 1 or k in later[kind]}
        for kind in KINDS
    }
    wanted = {row for kind in KINDS for rows in repeated[kind].values() for row in rows}
    valid = _valid_rows(conn, chunks, layout, dates, wanted) if wanted else set()
    starts = [c.first_row for c in chunks]
    marks: dict[int, dict[str, list[int]]] = {}
    for kind in KINDS:
        for key, rows in repeated[kind].items():
            alive = [row for row in rows if row in valid]
            losers = alive if key in later[kind] else alive[:-1]
            for row in losers:
                chunk = chunks[bisect_right(starts, row) - 1]
                marks.setdefault(chunk.id, {k: [] for k in KINDS})[kind].append(row)
    for chunk_marks in marks.values():
        for rows in chunk_marks.values():
            rows.sort()
    return marks


def _later_keys(
    conn: Connection, upload_id: int, project_id: int, keys: _Keys
) -> dict[str, set[str]]:
    """Pledge keys and emails of this upload that a valid row of a newer, started upload of
    the project holds: that upload wins, whichever runs last. Such uploads exist only when an
    older one is retried or runs late, so this is usually nothing to read."""
    from pledgeflow.chunks import chunk_layout

    newer = conn.execute(
        select(UPLOAD.c.id, UPLOAD.c.platform, UPLOAD.c.mapping, UPLOAD.c.status, UPLOAD.c.stats)
        .where(UPLOAD.c.project_id == project_id, UPLOAD.c.id > upload_id)
        .order_by(UPLOAD.c.id)
    ).all()
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for upload in newer:
        if upload.status == UploadStatus.PENDING or (
            upload.status == UploadStatus.FAILED and not _attempted(conn, upload.id)
        ):
            # Not started: while this upload processes, its chunks move every position they
            # reach forward (`write_mode`). Refused before import: it wrote nothing.
            continue
        chunks = _chunks(conn, upload.id)
        candidates: dict[int, tuple[str, str]] = {}
        layout = None
        for chunk in chunks:
            for row, headers, record in _records(conn, chunk):
                try:
                    layout = layout or chunk_layout(headers, upload.platform, upload.mapping)
                except ChunkDataError:
                    break
                held = row_keys(layout, record)
                if held is not None and (
                    held[1] in keys.rows["pledge"] or held[2] in keys.rows["backer"]
                ):
                    candidates[row] = held[1:]
        if layout is None or not candidates:
            continue
        dates = stored_dates(upload.stats)
        for row in _valid_rows(conn, chunks, layout, dates, set(candidates)):
            pledge_key, email = candidates[row]
            found["pledge"].add(pledge_key)
            found["backer"].add(email)
    return found


def _attempted(conn: Connection, upload_id: int) -> bool:
    return bool(
        conn.scalar(
            select(
                exists().where(
                    CsvUploadChunk.upload_id == upload_id,
                    CsvUploadChunk.status != UploadStatus.PENDING,
                )
            )
        )
    )


def _currency(
    project_currency: str | None, cells: Counter[str]
) -> tuple[str | None, list[dict[str, Any]]]:
    """The currency bare symbols and plain numbers mean, and what to warn about."""
    if project_currency is not None:
        return project_currency, []
    codes: Counter[str] = Counter()
    symbols: Counter[str] = Counter()
    plain = 0
    for cell, times in cells.items():
        match = MONEY_PATTERN.match(cell)
        if match is None or not cell.strip():
            continue
        tokens = [t for t in (match.group("prefix"), match.group("suffix")) if t]
        iso = [t for t in tokens if ISO_CODE.fullmatch(t)]
        if iso:
            codes[iso[0]] += times
        elif tokens:
            symbols[tokens[0]] += times
        else:
            plain += times
    if codes:
        # A campaign has one currency; the most common code is it (ties: alphabetical).
        return min(codes, key=lambda c: (-codes[c], c)), []
    warnings: list[dict[str, Any]] = []
    for symbol in sorted(symbols):
        stored = SYMBOL_CURRENCIES.get(symbol.rstrip(".").casefold(), ("?",))[0]
        warnings.append(
            {
                "code": "currency_guessed",
                "count": symbols[symbol],
                "stored": stored,
                "symbol": symbol,
                "message": f'amounts with no currency code: stored {stored} from "{symbol}", a '
                "guess; pass --currency CODE (or set the project's currency) and import again "
                "to store the right one",
            }
        )
    if plain:
        warnings.append(
            {
                "code": "currency_missing",
                "count": plain,
                "stored": None,
                "message": "amounts that are plain numbers: stored with no currency; pass "
                "--currency CODE (or set the project's currency) and import again to store one",
            }
        )
    return None, warnings


def write_mode(
    conn: Connection, upload_id: int, project_id: int, superseded: dict[str, Any] | None
) -> dict[str, Any]:
    """How a chunk writes: its superseded rows, and whether an unchanged row must still move
    its position forward, which it must while an older upload of the project is still
    processing chunks (it may have settled before this upload existed, so its rows do not know
    this upload's), or when the upload was never settled."""
    if superseded is None:
        return {"advance": True}
    older = conn.scalar(
        select(
            exists()
            .select_from(CHUNK.join(UPLOAD))
            .where(
                UPLOAD.c.project_id == project_id,
                UPLOAD.c.id < upload_id,
                UPLOAD.c.status == UploadStatus.PROCESSING,
                CsvUploadChunk.status != UploadStatus.COMPLETED,
            )
        )
    )
    return {
        "advance": bool(older),
        "superseded_pledges": frozenset(superseded.get("pledge", ())),
        "superseded_backers": frozenset(superseded.get("backer", ())),
    }


def settled_warnings(stats: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The warnings settling an upload found (about its currency), from the upload's stats."""
    return list(((stats or {}).get("settled") or {}).get("warnings") or [])
