"""The no-op guard every writer applies: a row is written only when a compared column differs
from what is stored (NULL equal to NULL), so an unchanged row is left unwritten."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, or_


def differs(stored: Any, new: Any, columns: Sequence[str]) -> ColumnElement[bool]:
    """Some column of `columns` differs between two column collections (stored row, new row)."""
    return or_(*(stored[c].is_distinct_from(new[c]) for c in columns))
