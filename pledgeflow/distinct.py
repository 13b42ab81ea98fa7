"""Created / updated / unchanged as distinct rows of each table across an upload's chunks.

Chunks share rows: every chunk of an upload touches most of its products, and a repeated email
touches one backer from several chunks. Summing per-chunk counts counts such a row once per
chunk. So each chunk reports, per table, which keys it created, updated and left unchanged, as
64-bit digests salted with the project (no email reaches the stats), sorted, packed and base64
encoded (about 11 characters a key). The salt is the project's, not the upload's, so that a
chunk skipped as unchanged (`pledgeflow.chunk_skip`) can reuse the keys of the earlier chunk
of the project it matched. Aggregation unions them: a key is created if any chunk
created it, else updated if any chunk updated it, else unchanged. How many chunks touched a row,
and in which order they committed, no longer matter.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

OUTCOMES = ("created", "updated", "unchanged")
Key = tuple[Hashable, ...]


@dataclass
class TableKeys:
    """The keys one chunk created, updated and left unchanged in one table: as tuples (`add`),
    or already joined as text (`add_joined`, what a writer reads from the database)."""

    created: set[Key] = field(default_factory=set)
    updated: set[Key] = field(default_factory=set)
    unchanged: set[Key] = field(default_factory=set)
    joined: dict[str, list[str]] = field(default_factory=lambda: {o: [] for o in OUTCOMES})

    def add(self, outcome: str, key: Key) -> None:
        """Record one key's outcome."""
        getattr(self, outcome).add(key)

    def add_joined(self, outcome: str, texts: Iterable[str]) -> None:
        """Record the outcome of keys given as their joined text (`join_key`)."""
        self.joined[outcome].extend(texts)

    def encoded(self, salt: str) -> dict[str, str]:
        """The digests of each outcome's keys, packed for a chunk's stats."""
        return {
            outcome: _pack(
                _digests([*map(join_key, getattr(self, outcome)), *self.joined[outcome]], salt)
            )
            for outcome in OUTCOMES
        }


# Between the parts of a key in the text its digest is made from.
KEY_SEPARATOR = "\x1f"


def join_key(key: Key) -> str:
    """The text a key's digest is made from: its parts as text, joined."""
    return KEY_SEPARATOR.join(map(str, key))


def project_salt(project_id: int) -> str:
    """The 16-character key the digests of a project's keys are made with."""
    return hashlib.blake2b(f"pledgeflow-project-{project_id}".encode(), digest_size=8).hexdigest()


def _digests(joined: list[str], salt: str) -> np.ndarray:
    text = np.array(joined, dtype=object)
    if not len(text):
        return np.empty(0, dtype=np.uint64)
    return np.unique(pd.util.hash_array(text, hash_key=salt, categorize=False))


def _pack(digests: np.ndarray) -> str:
    return base64.b64encode(digests.astype("<u8").tobytes()).decode("ascii")


def _unpack(packed: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(packed), dtype="<u8")


def _distinct(parts: list[np.ndarray]) -> np.ndarray:
    """The distinct digests of several unpacked lists, sorted."""
    if not parts:
        return np.empty(0, np.uint64)
    every = np.concatenate(parts)  # a new array, sorted in place
    every.sort()
    if len(every) < 2:
        return every
    first = np.empty(len(every), dtype=bool)
    first[0] = True
    np.not_equal(every[1:], every[:-1], out=first[1:])
    return every[first]


def packed_size(packed: str) -> int:
    """How many digests a packed list holds, without unpacking it."""
    return (len(packed) // 4 * 3 - packed[-2:].count("=")) // 8 if packed else 0


# The most digests unpacked at once while counting (16 MB, and as much again while they are
# sorted): above it, the digests are counted in passes over ranges of their values, each pass
# reading every chunk's packed lists again. A key's digest falls in one range, so each range's
# distinct counts add up to the whole's; memory stays the same whatever the upload's size.
PASS_DIGESTS = 1 << 21


def digest_ranges(total: int, per_pass: int | None = None) -> list[tuple[int, int | None]]:
    """The ranges [low, high) of digest values (high None: to the top) that passes over
    `total` digests count, so that each pass unpacks about `per_pass` of them."""
    passes = max(1, -(-total // (per_pass or PASS_DIGESTS)))
    edges = [(i << 64) // passes for i in range(passes)]
    return [(low, high) for low, high in zip(edges, [*edges[1:], None], strict=True)]


def _in_range(digests: np.ndarray, low: int, high: int | None) -> np.ndarray:
    if low == 0 and high is None:
        return digests
    kept = digests >= np.uint64(low)
    if high is not None:
        kept &= digests < np.uint64(high)
    return digests[kept]


def all_unchanged(keys: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, str]]:
    """Packed keys (a chunk's stats) with every key of each table moved to unchanged."""
    out = {}
    for table, packed in keys.items():
        every = np.unique(np.concatenate([_unpack(packed[o]) for o in OUTCOMES]))
        out[table] = {"created": _pack(every[:0]), "updated": _pack(every[:0])}
        out[table]["unchanged"] = _pack(every)
    return out


# Every completed chunk's packed keys, read anew for each pass (`DistinctCounts.counts`): for
# each chunk, its index and its stats' "keys".
KeyReader = Callable[[], Iterable[tuple[int, Mapping[str, Mapping[str, str]]]]]


@dataclass
class DistinctCounts:
    """Per-table distinct counts over the chunks added to it.

    A chunk's keys are held as packed (`add_chunk`), or left where they are stored and read
    again by the `KeyReader` given to `counts` (`add_stored`): what an upload of 1,000,000 rows
    reports is ~60 MB of packed text, more than one pass should hold."""

    tables: Iterable[str]
    # Packed as the chunks reported them: unpacked in passes (`counts`).
    _digests: dict[str, dict[str, list[str]]] = field(init=False)
    _summed: dict[str, dict[str, int]] = field(init=False)
    # The tables whose keys each stored chunk (by index) reported, and how many keys in all.
    _stored: dict[int, frozenset[str]] = field(init=False)
    _size: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self.tables = tuple(self.tables)
        self._digests = {t: {o: [] for o in OUTCOMES} for t in self.tables}
        self._summed = {
            t: {"created": 0, "updated": 0, "unchanged": 0, "deleted": 0} for t in self.tables
        }
        self._stored = {}

    def add_chunk(self, stats: Mapping[str, Any]) -> None:
        """Add one completed chunk's stats: its keys where it reported them, else its counts
        (a chunk completed before keys were reported is summed as it always was)."""
        keys = stats.get("keys") or {}
        for table in self._counted(stats, keys):
            for outcome in OUTCOMES:
                self._digests[table][outcome].append(keys[table][outcome])
                self._size += packed_size(keys[table][outcome])

    def add_stored(
        self, chunk_index: int, stats: Mapping[str, Any], sizes: Mapping[str, int]
    ) -> None:
        """Add one completed chunk's stats whose keys stay stored: `sizes` says how many keys
        it reported for each table (none: its counts are summed); `counts` reads them."""
        counted = self._counted(stats, sizes)
        self._stored[chunk_index] = frozenset(counted)
        self._size += sum(sizes[table] for table in counted)

    def _counted(self, stats: Mapping[str, Any], keyed: Mapping[str, Any]) -> list[str]:
        """The chunk's tables counted by their keys; the others' counts are summed here."""
        counted = []
        for table, counts in (stats.get("tables") or {}).items():
            if table not in self._summed:
                continue
            self._summed[table]["deleted"] += counts.get("deleted", 0)
            if table in keyed:
                counted.append(table)
            else:
                for outcome in OUTCOMES:
                    self._summed[table][outcome] += counts.get(outcome, 0)
        return counted

    def counts(self, stored: KeyReader | None = None) -> dict[str, dict[str, int]]:
        """created / updated / unchanged / deleted per table, each row counted once.

        The digests are unpacked in passes over ranges of their values (`digest_ranges`), and
        in each pass each table's outcomes made distinct by sorting them in place: at 300,000
        rows (~1.9 million keys) all unpacked at once, then copied by `np.unique`, took ~75 MB
        at the end of an import, and what the chunks' stats held grew with the upload."""
        if self._stored and stored is None:
            raise ValueError("chunks whose keys stay stored need a reader of them")
        found = {t: dict.fromkeys(OUTCOMES, 0) for t in self.tables}
        for low, high in digest_ranges(self._size):
            parts: dict[str, dict[str, list[np.ndarray]]] = {
                t: {o: [] for o in OUTCOMES} for t in self.tables
            }
            for table in self.tables:
                for outcome in OUTCOMES:
                    parts[table][outcome] = [
                        _in_range(_unpack(p), low, high) for p in self._digests[table][outcome]
                    ]
            if stored is not None and self._stored:
                for index, keys in stored():
                    for table in self._stored.get(index, ()):
                        for outcome in OUTCOMES:
                            digests = _unpack(keys[table][outcome])
                            parts[table][outcome].append(_in_range(digests, low, high))
            for table in self.tables:
                created, updated, unchanged = (_distinct(parts[table][o]) for o in OUTCOMES)
                parts[table] = {}  # this table's digests are counted: free them
                updated = np.setdiff1d(updated, created, assume_unique=True)
                unchanged = np.setdiff1d(
                    np.setdiff1d(unchanged, created, assume_unique=True),
                    updated,
                    assume_unique=True,
                )
                for outcome, distinct in zip(OUTCOMES, (created, updated, unchanged), strict=True):
                    found[table][outcome] += len(distinct)
        return {
            table: {
                **{o: self._summed[table][o] + found[table][o] for o in OUTCOMES},
                "deleted": self._summed[table]["deleted"],
            }
            for table in self.tables
        }
