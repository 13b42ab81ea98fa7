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

import hashlib
import logging
import re
from array import array
from bisect import bisect_left, bisect_right
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import Connection, Row, exists, func, select, update

from pledgeflow.allocators import release_freed_memory
from pledgeflow.chunk_digest import as_data_digest, chunk_inputs, data_digest_column, inputs_digest
from pledgeflow.chunk_rows import answers_by_value, chunk_layout, read_chunk_data
from pledgeflow.collector import gc_paused
from pledgeflow.database import get_engine, transaction
from pledgeflow.dates import DateColumn
from pledgeflow.failures import ChunkDataError, UploadNotFoundError
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


# Bytes of the digest a pledge key or email is kept as while an upload is settled: at 128 bits,
# the chance that two distinct keys of even a 5,000,000-row upload share one is below 1e-25.
KEY_DIGEST_BYTES = 16


def key_digest(key: str) -> bytes:
    """The digest a pledge key or email is compared by while an upload is settled."""
    # surrogatepass: a web app's JSON may carry a lone surrogate, which strict UTF-8 refuses.
    encoded = key.encode("utf-8", "surrogatepass")
    return hashlib.blake2b(encoded, digest_size=KEY_DIGEST_BYTES).digest()


class _Keys:
    """Where each pledge key and email occurs in one upload: row numbers in file order, beside
    the digests of the row's pledge key and email (`key_digest`).

    Digests in flat buffers take 40 bytes a row; a dict of the keys themselves took ~110 MB
    at 300,000 rows and grew with the file, which made the import's peak memory grow too."""

    def __init__(self) -> None:
        self.rows = array("q")
        self.digests = {kind: bytearray() for kind in KINDS}
        self._held: dict[str, set[bytes]] = {}

    def add(self, row: int, pledge_key: str, email: str) -> None:
        self.rows.append(row)
        self.digests["pledge"] += key_digest(pledge_key)
        self.digests["backer"] += key_digest(email)

    def holds(self, kind: str, key: str) -> bool:
        """Whether a row of the upload holds `key` (built on first use: needed only when a
        newer upload of the project has started, which is rare)."""
        if kind not in self._held:
            digests = self.digests[kind]
            self._held[kind] = {
                bytes(digests[i : i + KEY_DIGEST_BYTES])
                for i in range(0, len(digests), KEY_DIGEST_BYTES)
            }
        return key_digest(key) in self._held[kind]

    def repeated(self, kind: str, later: set[bytes]) -> list[tuple[list[int], bool]]:
        """The rows (in file order) of each key that more than one row holds or whose digest is
        in `later`, and whether it is; found by sorting the digests."""
        count = len(self.rows)
        if not count:
            return []
        rows = np.frombuffer(self.rows, dtype=np.int64)
        digests = np.frombuffer(self.digests[kind], dtype=np.uint64).reshape(count, 2)
        order = np.lexsort((rows, digests[:, 1], digests[:, 0]))
        digests, rows = digests[order], rows[order]
        first = np.ones(count, dtype=bool)
        first[1:] = (digests[1:] != digests[:-1]).any(axis=1)
        starts = np.flatnonzero(first)
        sizes = np.diff(np.append(starts, count))
        in_later = np.zeros(len(starts), dtype=bool)
        if later:
            in_later = np.fromiter(
                (digests[start].tobytes() in later for start in starts), bool, len(starts)
            )
        kept = (sizes > 1) | in_later
        return [
            (rows[start : start + size].tolist(), bool(is_later))
            for start, size, is_later in zip(starts[kept], sizes[kept], in_later[kept], strict=True)
        ]


def _chunks(conn: Connection, upload_id: int) -> list[_Chunk]:
    found = conn.execute(
        select(CsvUploadChunk.id, CsvUploadChunk.first_row, CsvUploadChunk.row_count)
        .where(CsvUploadChunk.upload_id == upload_id)
        .order_by(CsvUploadChunk.chunk_index)
    ).all()
    return [_Chunk(*row) for row in found]


def _records(conn: Connection, chunk: _Chunk) -> Iterator[tuple[int, list[str], Sequence[Any]]]:
    """(data-row number, headers, record) of every row of a chunk."""
    data = read_chunk_data(conn, chunk.id)
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
    known: Mapping[int, set[int]] | None = None,
) -> set[int]:
    """Which of the `wanted` data rows `build_frames` imports (the others it rejects); `known`
    holds the rows some chunks reject, known without checking them (`_known_rejections`).

    Only the row checks run (`rejected_rows`), over the wanted rows of several chunks at once
    (up to CHECK_ROWS, while their headers agree): each call has a fixed cost. When a date
    field has no style decided for the upload, each chunk's rows go alone, as each chunk
    infers its own."""
    together = all(name in dates for name in DATE_FIELDS if name in layout.fields)
    valid: set[int] = set()
    ordered = sorted(wanted)
    batch = _Batch(layout, dates, valid)
    for chunk in chunks:
        held = ordered[
            bisect_left(ordered, chunk.first_row) : bisect_left(
                ordered, chunk.first_row + chunk.row_count
            )
        ]
        if not held:
            continue
        if known is not None and chunk.id in known:
            valid.update(row for row in held if row not in known[chunk.id])
            continue
        rows = set(held)
        for row, headers, record in _records(conn, chunk):
            if row in rows:
                batch.add(row, headers, record)
        if not together or len(batch.numbers) >= CHECK_ROWS:
            batch.flush()
    batch.flush()
    return valid


class _Batch:
    """Rows waiting to be checked together (`_valid_rows`); those imported go to `valid`."""

    def __init__(self, layout: Layout, dates: Mapping[str, DateColumn], valid: set[int]):
        self.layout, self.dates, self.valid = layout, dates, valid
        self.headers: list[str] = []
        self.numbers: list[int] = []
        self.records: list[Sequence[Any]] = []

    def add(self, row: int, headers: list[str], record: Sequence[Any]) -> None:
        if headers is not self.headers and headers != self.headers:
            self.flush()  # one header row per call
            self.headers = headers
        self.numbers.append(row)
        self.records.append(record)

    def flush(self) -> None:
        if self.records:
            rejected = rejected_rows(
                self.headers,
                self.records,
                self.layout,
                dates=self.dates,
                row_numbers=self.numbers,
            )
            self.valid.update(row for row in self.numbers if row not in rejected)
        self.numbers, self.records = [], []


@dataclass
class Settlement:
    """What settling an upload found."""

    superseded: dict[int, dict[str, list[int]]]
    currency: str | None
    warnings: list[dict[str, Any]]

    def counts(self) -> dict[str, int]:
        """Superseded rows per kind, for stats and logs."""
        return {k: sum(len(m[k]) for m in self.superseded.values()) for k in KINDS}


def upload_inputs(conn: Connection, upload_id: int) -> Row[*tuple[Any, ...]] | None:
    """What an upload's rows are read and settled with: its id, shop, project, platform,
    mapping and stats, and its project's currency; None when there is no such upload."""
    return conn.execute(
        select(
            UPLOAD.c.id,
            UPLOAD.c.shop,
            UPLOAD.c.project_id,
            UPLOAD.c.platform,
            UPLOAD.c.mapping,
            UPLOAD.c.stats,
            PROJECT.c.currency,
        )
        .join(PROJECT, PROJECT.c.id == UPLOAD.c.project_id)
        .where(UPLOAD.c.id == upload_id)
    ).first()


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
        upload = upload_inputs(conn, upload_id)
        if upload is None:
            raise UploadNotFoundError(upload_id)
        chunks = _chunks(conn, upload_id)
        keys = _Keys()
        cells: Counter[str] = Counter()
        money_at = [layout.fields[f] for f in MONEY_FIELDS if f in layout.fields]
        # Each chunk's JSON becomes thousands of lists that form no cycle (`gc_paused`).
        with gc_paused():
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
        repeated = {
            kind: keys.repeated(kind, {key_digest(key) for key in later[kind]}) for kind in KINDS
        }
        # Every row's digests (40 bytes a row) are done with: freed before the rows are
        # checked, a chunk's worth at a time, so the two are never held together.
        del keys, later
        release_freed_memory()
        currency, warnings = _currency(upload.currency, cells)
        # The currency the chunks will read from the project once this settlement commits.
        chunks_currency = upload.currency or (None if dry_run else currency)
        known = _known_rejections(conn, upload_id, upload, chunks, chunks_currency)
        superseded = _superseded(conn, chunks, layout, dates or {}, repeated, known)
    release_freed_memory()  # the rows checked
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
    repeated: Mapping[str, list[tuple[list[int], bool]]],
    known: Mapping[int, set[int]],
) -> dict[int, dict[str, list[int]]]:
    """Per chunk, the rows whose key a later valid row (or a newer upload) holds: of the
    `repeated` keys' rows (`_Keys.repeated`), the valid ones but the last."""
    wanted = {row for kind in KINDS for rows, _ in repeated[kind] for row in rows}
    valid = _valid_rows(conn, chunks, layout, dates, wanted, known) if wanted else set()
    starts = [c.first_row for c in chunks]
    marks: dict[int, dict[str, list[int]]] = {}
    for kind in KINDS:
        for rows, is_later in repeated[kind]:
            alive = [row for row in rows if row in valid]
            losers = alive if is_later else alive[:-1]
            for row in losers:
                chunk = chunks[bisect_right(starts, row) - 1]
                marks.setdefault(chunk.id, {k: [] for k in KINDS})[kind].append(row)
    for chunk_marks in marks.values():
        for rows in chunk_marks.values():
            rows.sort()
    return marks


def _known_rejections(
    conn: Connection, upload_id: int, upload: Any, chunks: list[_Chunk], currency: str | None
) -> dict[int, set[int]]:
    """The rows each chunk rejects, for the chunks whose rows' inputs (content, position,
    layout, date styles, currency, code: `chunk_digest.inputs_digest`) equal those of a
    completed chunk of the project's latest other completed upload, which rejected exactly
    those rows: the same inputs map to the same rows. A re-import of an unchanged file is then
    settled without mapping its repeated rows again."""
    latest = conn.scalar(
        select(func.max(UPLOAD.c.id)).where(
            UPLOAD.c.project_id == upload.project_id,
            UPLOAD.c.id != upload_id,
            UPLOAD.c.status == UploadStatus.COMPLETED,
        )
    )
    if latest is None:
        return {}
    rejected_by_inputs: dict[str, set[int]] = {}
    for inputs, errors in conn.execute(
        select(CsvUploadChunk.stats["inputs"].as_string(), CsvUploadChunk.errors).where(
            CsvUploadChunk.upload_id == latest, CsvUploadChunk.status == UploadStatus.COMPLETED
        )
    ):
        rejected = errors.get("rejected") if isinstance(errors, dict) else None
        if inputs and isinstance(rejected, list):
            rows = {entry.get("row") if isinstance(entry, dict) else None for entry in rejected}
            if all(isinstance(row, int) for row in rows):
                rejected_by_inputs[inputs] = {int(row) for row in rows if row is not None}
    if not rejected_by_inputs:
        return {}
    digests: dict[int, object] = dict(
        conn.execute(
            select(CsvUploadChunk.id, data_digest_column(conn.dialect.name)).where(
                CsvUploadChunk.upload_id == upload_id
            )
        ).all()
    )
    dates = {name: column.as_dict() for name, column in stored_dates(upload.stats).items()}
    value_answers = answers_by_value(upload.stats)
    known: dict[int, set[int]] = {}
    for chunk in chunks:
        inputs = chunk_inputs(
            data_digest=as_data_digest(digests[chunk.id]),
            first_row=chunk.first_row,
            shop=upload.shop,
            platform=upload.platform,
            mapping=upload.mapping,
            currency=currency,
            dates=dates,
            value_answers=value_answers,
        )
        found = rejected_by_inputs.get(inputs_digest(inputs))
        if found is not None:
            known[chunk.id] = found
    return known


def _later_keys(
    conn: Connection, upload_id: int, project_id: int, keys: _Keys
) -> dict[str, set[str]]:
    """Pledge keys and emails of this upload that a valid row of a newer, started upload of
    the project holds: that upload wins, whichever runs last. Such uploads exist only when an
    older one is retried or runs late, so this is usually nothing to read."""
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
                    keys.holds("pledge", held[1]) or keys.holds("backer", held[2])
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
