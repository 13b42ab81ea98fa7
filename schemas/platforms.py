"""Platform column maps and detection signatures (reference/platform-formats.md).

Detection looks at the header row only. Each platform maps its headers onto the canonical fields
below; whatever a layout does not map is kept in `survey.answers` under its original header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

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

ADDON_HEADER = re.compile(r"^\[addon:\s*(\d+)\]\s*(.+)$", re.IGNORECASE)


def normalize_header(header: str) -> str:
    """Strip a BOM, trim, collapse inner whitespace and case-fold a header name."""
    return " ".join(header.replace("\ufeff", "").split()).casefold()


KICKSTARTER_COLUMNS: dict[str, tuple[str, ...]] = {
    "backer number": (PLEDGE_KEY,),
    "backer id": (PLEDGE_KEY, "backer_external_id"),
    "backer uid": ("backer_external_id",),
    "backer name": ("backer_name",),
    "email": (EMAIL,),
    "shipping country": ("country",),
    "shipping amount": ("shipping_amount",),
    "reward title": ("reward_title",),
    "reward minimum": ("reward_minimum",),
    "backing minimum": ("reward_minimum",),
    "reward id": ("reward_id",),
    "pledge amount": ("amount",),
    "pledged at": ("pledged_at",),
    "pledged at (utc)": ("pledged_at",),
    "pledged status": ("status",),
    "survey response": ("responded_at",),
    "shipping name": ("shipping_name",),
    "shipping address 1": ("shipping_address_1",),
    "shipping address 2": ("shipping_address_2",),
    "shipping city": ("shipping_city",),
    "shipping state": ("shipping_state",),
    "shipping postal code": ("shipping_postal_code",),
    "shipping country name": ("shipping_country_name",),
    "shipping country code": ("shipping_country_code",),
    "shipping phone number": ("shipping_phone", "phone"),
    "shipping delivery notes": ("delivery_notes",),
}
# Known Kickstarter columns with no canonical field: kept in survey.answers, never items.
KICKSTARTER_ANSWER_HEADERS = frozenset(
    {
        "notes",
        "rewards sent?",
        "fulfillment status",
        "bonus support",
        "billing state/province",
        "billing country",
        "late pledge",
        "pledge over time",
        "amount due",
        "amount paid",
    }
)


@dataclass(frozen=True)
class Signature:
    """Headers whose presence identifies a platform, tried in precedence order."""

    platform: str
    name: str
    all_of: frozenset[str]
    # The headers a file of this platform is expected to have; used to name what an
    # unknown layout lacks relative to its closest platform.
    expected: tuple[str, ...]


SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "kickstarter",
        "backer uid + pledged status",
        frozenset({"backer uid", "pledged status"}),
        ("Backer Number", "Backer UID", "Email", "Pledge Amount", "Pledged Status"),
    ),
    Signature(
        "kickstarter",
        "backer id + pledged status + rewards sent?",
        frozenset({"backer id", "pledged status", "rewards sent?"}),
        ("Backer Id", "Email", "Pledge Amount", "Pledged Status", "Rewards Sent?"),
    ),
)
PLATFORMS = ("kickstarter",)


@dataclass(frozen=True)
class Layout:
    """How one header row maps onto canonical fields, products and answers."""

    platform: str
    variant: str
    signature: str
    headers: tuple[str, ...]
    fields: dict[str, int]
    addon_columns: tuple[tuple[int, str, str], ...] = ()  # (index, external id, name)
    item_columns: tuple[tuple[int, str], ...] = ()  # (index, name)
    answer_columns: tuple[tuple[int, str], ...] = ()  # (index, answers key)

    @property
    def unmapped_headers(self) -> list[str]:
        """Headers kept only in survey.answers."""
        return [key for _, key in self.answer_columns]


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


def detect_platform(headers: Sequence[str]) -> Signature:
    """Return the first signature (in precedence order) the headers satisfy."""
    present = {normalize_header(h) for h in headers}
    for signature in SIGNATURES:
        if signature.all_of <= present:
            return signature
    raise _closest_miss(present)


def _closest_miss(present: set[str]) -> UnknownLayoutError:
    def missing(signature: Signature) -> list[str]:
        return [h for h in signature.expected if normalize_header(h) not in present]

    best = min(SIGNATURES, key=lambda s: len(missing(s)) / len(s.expected))
    return UnknownLayoutError(best.platform, missing(best))


@lru_cache(maxsize=256)
def resolve_layout(headers: tuple[str, ...], platform: str | None = None) -> Layout:
    """Detect (or take the forced) platform and map every column of the header row."""
    if platform is None:
        signature = detect_platform(headers)
        platform, signature_name = signature.platform, signature.name
    elif platform not in PLATFORMS:
        raise UnsupportedPlatformError(
            f"unsupported platform {platform!r}; supported: {', '.join(PLATFORMS)}"
        )
    else:
        signature_name = "forced by caller"
    return _kickstarter_layout(headers, signature_name)


def _kickstarter_variant(names: list[str]) -> str:
    present = set(names)
    if {"pledged at (utc)", "amount due", "pledge over time", "late pledge"} & present:
        variant = "2024+"
    elif {"backing minimum", "bonus support", "fulfillment status"} & present:
        variant = "2020+"
    elif {"reward title", "billing country", "billing state/province"} & present:
        variant = "2017-2019"
    elif "backer id" in present:
        variant = "2013"
    else:
        variant = "2014-2017"
    if not {"reward id", "reward title", "shipping amount"} & present:
        variant += " no-reward"
    return variant


def _kickstarter_layout(headers: tuple[str, ...], signature: str) -> Layout:
    names = [normalize_header(h) for h in headers]
    variant = _kickstarter_variant(names)
    items_era = variant.startswith(("2020+", "2024+"))
    survey_at = names.index("survey response") if "survey response" in names else len(names)
    fields: dict[str, int] = {}
    addons: list[tuple[int, str, str]] = []
    items: list[tuple[int, str]] = []
    answers: list[tuple[int, str]] = []
    used_keys: set[str] = set()
    for index, (raw, name) in enumerate(zip(headers, names, strict=True)):
        label = " ".join(raw.replace("\ufeff", "").split())
        if name in KICKSTARTER_COLUMNS and not any(f in fields for f in KICKSTARTER_COLUMNS[name]):
            for canonical in KICKSTARTER_COLUMNS[name]:
                fields[canonical] = index
        elif match := ADDON_HEADER.match(label):
            addons.append((index, match.group(1), match.group(2).strip()))
        elif (
            items_era
            and name
            and index < survey_at
            and name not in KICKSTARTER_ANSWER_HEADERS
            and name not in KICKSTARTER_COLUMNS
            and not re.search(r"[:?]", name)
        ):
            items.append((index, label))
        else:
            key = label or f"Column {index + 1}"
            suffix = 2
            while key in used_keys:
                key = f"{label or 'Column'} ({suffix})"
                suffix += 1
            used_keys.add(key)
            answers.append((index, key))
    missing = [h for f, h in ((PLEDGE_KEY, "Backer Number"), (EMAIL, "Email")) if f not in fields]
    if missing:
        raise UnknownLayoutError("kickstarter", missing)
    return Layout(
        platform="kickstarter",
        variant=variant,
        signature=signature,
        headers=headers,
        fields=fields,
        addon_columns=tuple(addons),
        item_columns=tuple(items),
        answer_columns=tuple(answers),
    )
