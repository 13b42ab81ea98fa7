"""Explicit column mappings: canonical field -> source header, for layouts no platform matches.

A mapping is a flat object, e.g. `{"email": "E-mail address", "pledge_key": "Order",
"amount": "Total", "items": ["Mug", "Poster"]}`: each canonical field (schemas.layout) names
the header it is read from; `items` lists quantity columns that become item products. Columns
the mapping does not name are kept in `survey.answers`. Without `pledge_key`, pledges are keyed
by email, as for a Gamefound file without `Backer number`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.layout import (
    CANONICAL_FIELDS,
    EMAIL,
    PLEDGE_KEY,
    Layout,
    answer_keys,
    clean_label,
    normalize_header,
)

ITEMS = "items"
MAPPING_KEYS = (*CANONICAL_FIELDS, ITEMS)


class MappingError(ValueError):
    """A mapping that is malformed, or names headers the file does not have."""

    code = "invalid_mapping"

    def __init__(
        self,
        message: str,
        *,
        missing_headers: Sequence[str] = (),
        available_headers: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.missing_headers = list(missing_headers)
        self.available_headers = list(available_headers)

    def as_error(self) -> dict[str, object]:
        """The upload-level error object stored in csv_upload.errors."""
        error: dict[str, object] = {"code": self.code, "message": str(self)}
        if self.missing_headers:
            error["missing_headers"] = self.missing_headers
            error["available_headers"] = self.available_headers
        return error


@dataclass(frozen=True)
class ColumnMapping:
    """A validated mapping; hashable, so layouts built from it can be cached."""

    fields: tuple[tuple[str, str], ...]
    items: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: object) -> ColumnMapping:
        """Check a parsed mapping's shape: known keys, header names as text, an email."""
        if not isinstance(data, Mapping) or not data:
            raise MappingError("a mapping must be a non-empty object of field: header")
        unknown = sorted(str(k) for k in data if k not in MAPPING_KEYS)
        if unknown:
            raise MappingError(
                f"unknown mapping keys: {', '.join(unknown)}; allowed: {', '.join(MAPPING_KEYS)}"
            )
        fields: list[tuple[str, str]] = []
        items: tuple[str, ...] = ()
        for key, value in data.items():
            if key == ITEMS:
                if not isinstance(value, list) or not all(_is_name(v) for v in value):
                    raise MappingError("`items` must be a list of header names")
                items = tuple(value)
            elif not _is_name(value):
                raise MappingError(
                    f"`{key}` must name one header as text "
                    "(in YAML, quote header names such as No, Yes or 2020)"
                )
            else:
                fields.append((str(key), value))
        if EMAIL not in dict(fields):
            raise MappingError("a mapping must name the `email` header")
        return cls(tuple(fields), items)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form stored on the upload row."""
        out: dict[str, Any] = dict(self.fields)
        if self.items:
            out[ITEMS] = list(self.items)
        return out

    def named_headers(self) -> list[str]:
        """Every header the mapping names, in its order."""
        return [header for _, header in self.fields] + list(self.items)

    def check_headers(self, headers: Sequence[str]) -> None:
        """Refuse a mapping that names a header the file lacks, listing what the file has."""
        present = {normalize_header(h) for h in headers}
        missing = [h for h in self.named_headers() if normalize_header(h) not in present]
        if missing:
            available = [clean_label(h) for h in headers]
            raise MappingError(
                f"the mapping names headers the file does not have: {', '.join(missing)}; "
                f"available headers: {', '.join(available)}",
                missing_headers=missing,
                available_headers=available,
            )


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def mapping_layout(headers: tuple[str, ...], mapping: ColumnMapping) -> Layout:
    """Map a header row the way an explicit mapping says; the first equal header wins."""
    mapping.check_headers(headers)
    names = [normalize_header(h) for h in headers]
    fields = {field: names.index(normalize_header(header)) for field, header in mapping.fields}
    items = [(names.index(normalize_header(h)), clean_label(h)) for h in mapping.items]
    used = set(fields.values()) | {i for i, _ in items}
    answers = [(i, h) for i, h in enumerate(headers) if i not in used]
    return Layout(
        platform="custom",
        variant="custom mapping",
        signature="mapping",
        headers=headers,
        fields=fields,
        item_columns=tuple(items),
        answer_columns=answer_keys(answers),
        key_from_email=PLEDGE_KEY not in fields,
    )
