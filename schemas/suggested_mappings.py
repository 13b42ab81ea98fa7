"""A suggested column mapping for a header row no platform matches: each canonical field
matched to the closest header, by the names the known platforms give that field."""

from __future__ import annotations

from collections.abc import Sequence
from difflib import SequenceMatcher

from schemas.layout import CANONICAL_FIELDS, clean_label, normalize_header
from schemas.platforms import LAYOUTS

# How alike (0-1, difflib's ratio) a header must be to a field's known name to be suggested.
MIN_LIKENESS = 0.75


def _known_names() -> dict[str, set[str]]:
    """Every canonical field's names: its own (`shipping_city` as `shipping city`) and each
    header a platform reads it from."""
    names: dict[str, set[str]] = {f: {f.replace("_", " ")} for f in CANONICAL_FIELDS}
    for layout in LAYOUTS:
        for header, fields in layout.columns.items():
            for field in fields:
                if field in names:
                    names[field].add(normalize_header(header))
    return names


KNOWN_NAMES = _known_names()


def _likeness(header: str, known: str) -> float:
    """difflib's ratio, or 0.9 when one holds the other as whole words (`e-mail address`)."""
    if f" {known} " in f" {header} " or f" {header} " in f" {known} ":
        return max(0.9, SequenceMatcher(None, header, known).ratio())
    return SequenceMatcher(None, header, known).ratio()


def suggest_mapping(headers: Sequence[str]) -> dict[str, str]:
    """Canonical field -> header for the fields some header resembles closely enough, each
    header used once, the closest pairs first; headers as written in the file."""
    pairs: list[tuple[float, str, int]] = []
    for index, header in enumerate(headers):
        name = normalize_header(header)
        for field, known in KNOWN_NAMES.items():
            likeness = max(_likeness(name, k) for k in known)
            if likeness >= MIN_LIKENESS:
                pairs.append((likeness, field, index))
    suggestion: dict[str, str] = {}
    used: set[int] = set()
    for _, field, index in sorted(pairs, key=lambda p: (-p[0], p[2], p[1])):
        if field not in suggestion and index not in used:
            suggestion[field] = clean_label(headers[index])
            used.add(index)
    return {f: suggestion[f] for f in CANONICAL_FIELDS if f in suggestion}
