"""Canonical fields and the `Layout` a header row maps onto, shared by every platform.

A layout is positional: it maps column *indexes* to canonical fields, products and answers, so
a header name that repeats (Indiegogo's four `Item Name` groups) loses nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

# Canonical fields a source column can map to.
PLEDGE_KEY = "pledge_key"
EMAIL = "email"
MONEY_FIELDS = ("amount", "shipping_amount", "reward_minimum")
DATE_FIELDS = ("pledged_at", "responded_at")
SURVEY_TEXT_FIELDS = (
    "shipping_name",
    "shipping_address_1",
    "shipping_address_2",
    "shipping_city",
    "shipping_state",
    "shipping_postal_code",
    "shipping_country_name",
    "shipping_country_code",
    "shipping_phone",
    "delivery_notes",
)
TEXT_FIELDS = (
    PLEDGE_KEY,
    EMAIL,
    "backer_name",
    "backer_external_id",
    "phone",
    "country",
    "reward_title",
    "reward_id",
    "status",
    *SURVEY_TEXT_FIELDS,
)
CANONICAL_FIELDS = (*TEXT_FIELDS, *MONEY_FIELDS, *DATE_FIELDS)


def normalize_header(header: str) -> str:
    """Strip a BOM, trim, collapse inner whitespace and case-fold a header name."""
    return " ".join(header.replace("\ufeff", "").split()).casefold()


def clean_label(header: str) -> str:
    """A header as written, without a BOM and with its whitespace collapsed."""
    return " ".join(header.replace("\ufeff", "").split())


@dataclass(frozen=True)
class Layout:
    """How one header row maps onto canonical fields, products and answers."""

    platform: str
    variant: str
    signature: str
    headers: tuple[str, ...]
    fields: dict[str, int]
    addon_columns: tuple[tuple[int, str, str], ...] = ()  # (index, external id, name)
    item_columns: tuple[tuple[int, str], ...] = ()  # (index, name): a quantity per row
    answer_columns: tuple[tuple[int, str], ...] = ()  # (index, answers key)
    # (Item Name index, Item SKU index or None): the cell names an item owed once per group.
    item_name_groups: tuple[tuple[int, int | None], ...] = ()
    # (field, fallback field): a blank field takes the fallback's value (BackerKit's Name).
    fallbacks: tuple[tuple[str, str], ...] = ()
    # The reward title is the text before this separator (BackerKit's `Reward Description`).
    title_separator: str | None = None
    # No pledge key column: pledges are keyed by the trimmed, lower-cased email.
    key_from_email: bool = False
    # The item columns are a block of columns whose names say nothing of what they hold: each is
    # an item only if the upload's values are quantities (`pledgeflow.quantity_columns`).
    items_by_value: bool = False

    @property
    def unmapped_headers(self) -> list[str]:
        """Headers kept only in survey.answers."""
        return [key for _, key in self.answer_columns]

    def detection(self) -> dict[str, object]:
        """The detection report stored on the upload and printed by the CLI."""
        return {
            "platform": self.platform,
            "signature": self.signature,
            "variant": self.variant,
            "pledge_key": "email" if self.key_from_email else self.header_of(PLEDGE_KEY),
            "item_columns": [name for _, name in self.item_columns],
            "unmapped_columns": self.unmapped_headers,
        }

    def with_value_answers(self, indexes: Iterable[int]) -> Layout:
        """This layout with the item columns at `indexes` kept as answers instead: their cells
        are not all quantities (whole numbers >= 0, or blank)."""
        moved = set(indexes) & {index for index, _ in self.item_columns}
        if not moved:
            return self
        used = {key for _, key in self.answer_columns}
        answers = list(self.answer_columns)
        for index, name in self.item_columns:
            if index in moved:
                key, suffix = name, 2
                while key in used:
                    key, suffix = f"{name} ({suffix})", suffix + 1
                used.add(key)
                answers.append((index, key))
        return replace(
            self,
            item_columns=tuple(c for c in self.item_columns if c[0] not in moved),
            answer_columns=tuple(sorted(answers)),
        )

    def header_of(self, field_name: str) -> str:
        """The source header a canonical field is read from."""
        return clean_label(self.headers[self.fields[field_name]])


def answer_keys(columns: Iterable[tuple[int, str]]) -> tuple[tuple[int, str], ...]:
    """Give each (index, header) a unique answers key: the header, then `<header> (2)`, …"""
    used: set[str] = set()
    out = []
    for index, raw in columns:
        label = clean_label(raw)
        key = label or f"Column {index + 1}"
        suffix = 2
        while key in used:
            key = f"{label or 'Column'} ({suffix})"
            suffix += 1
        used.add(key)
        out.append((index, key))
    return tuple(out)


class UnknownLayoutError(ValueError):
    """The header row matches no supported platform."""

    code = "unknown_layout"

    def __init__(self, closest_platform: str, missing_headers: list[str]) -> None:
        self.closest_platform = closest_platform
        self.missing_headers = missing_headers
        super().__init__(
            f"unknown header layout: closest platform is {closest_platform}, "
            f"which also needs {', '.join(missing_headers)}"
        )

    def as_error(self) -> dict[str, object]:
        """The upload-level error object stored in csv_upload.errors."""
        return {
            "code": self.code,
            "message": str(self),
            "closest_platform": self.closest_platform,
            "missing_headers": self.missing_headers,
        }


class UnsupportedPlatformError(ValueError):
    """A caller forced a platform pledgeflow does not know."""

    code = "unsupported_platform"
