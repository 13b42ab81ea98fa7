"""What a chunk's writers are told (`WriteTarget`) and what they report (`WriteCounts`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, String, cast, literal

from pledgeflow.distinct import KEY_SEPARATOR, OUTCOMES, TableKeys, join_key, project_salt


@dataclass
class TableCounts:
    """What one chunk did to one table, and to which keys (see `pledgeflow.distinct`)."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    keys: TableKeys = field(default_factory=TableKeys, repr=False, compare=False)

    def add(self, other: TableCounts) -> None:
        """Accumulate another count into this one."""
        self.created += other.created
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        for outcome in OUTCOMES:
            getattr(self.keys, outcome).update(getattr(other.keys, outcome))

    def as_dict(self) -> dict[str, int]:
        """Plain JSON-ready counts."""
        return {
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
        }


@dataclass
class WriteTarget:
    """Where a chunk's rows go, which upload writes them, and how its rows were settled.

    `superseded_pledges` / `superseded_backers`: the chunk's data rows whose pledge key or email
    a later row of the same upload holds. `advance`: an unchanged backer or pledge still moves
    its position forward; needed while an older upload of the project may still write (its
    rows must not win over this one's), or when the upload was never settled.
    """

    shop: str
    project_id: int
    upload_id: int
    platform: str
    advance: bool = True
    superseded_pledges: frozenset[int] = frozenset()
    superseded_backers: frozenset[int] = frozenset()


@dataclass
class WriteCounts:
    """Counts per table for one chunk."""

    tables: dict[str, TableCounts] = field(default_factory=dict)

    def as_dict(self) -> dict[str, dict[str, int]]:
        """Plain JSON-ready form."""
        return {name: counts.as_dict() for name, counts in self.tables.items()}

    def keys_packed(self, project_id: int) -> dict[str, dict[str, str]]:
        """Each table's created / updated / unchanged keys as the project's digests."""
        salt = project_salt(project_id)
        return {name: counts.keys.encoded(salt) for name, counts in self.tables.items()}


def key_text(scope: tuple[Any, ...], *key: ColumnElement[Any]) -> ColumnElement[str]:
    """A key as the text its digest is made from (`join_key`), built by the database: `scope`
    (the key's part the chunk shares), then each column of `key` as text."""
    text: ColumnElement[str] = literal(join_key((*scope, "")), String)
    for i, part in enumerate(key):
        if i:
            text = text.concat(literal(KEY_SEPARATOR, String))
        text = text.concat(cast(part, String))
    return text
