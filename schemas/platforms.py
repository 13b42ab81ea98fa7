"""Platform detection signatures, in precedence order, and Kickstarter's column map.

Detection looks at the header row only (platform-formats.md section 6): BackerKit, then
Indiegogo, then Kickstarter, then Gamefound-style pledge files, whose columns are also found in
Kickstarter reports and so only count when nothing stronger matches. Each platform maps its
headers onto the canonical fields of `schemas.layout`; whatever a layout does not map is kept
in `survey.answers` under its original header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from schemas.backerkit import backerkit_layout
from schemas.gamefound import gamefound_layout
from schemas.indiegogo import indiegogo_layout
from schemas.layout import (
    CANONICAL_FIELDS,
    DATE_FIELDS,
    EMAIL,
    MONEY_FIELDS,
    PLEDGE_KEY,
    SURVEY_TEXT_FIELDS,
    TEXT_FIELDS,
    Layout,
    UnknownLayoutError,
    UnsupportedPlatformError,
    normalize_header,
)
from schemas.mappings import ColumnMapping, mapping_layout

__all__ = [
    "CANONICAL_FIELDS",
    "DATE_FIELDS",
    "EMAIL",
    "MONEY_FIELDS",
    "PLATFORMS",
    "PLEDGE_KEY",
    "SIGNATURES",
    "SURVEY_TEXT_FIELDS",
    "TEXT_FIELDS",
    "Layout",
    "Signature",
    "UnknownLayoutError",
    "UnsupportedPlatformError",
    "detect_platform",
    "normalize_header",
    "resolve_layout",
]

ADDON_HEADER = re.compile(r"^\[addon:\s*(\d+)\]\s*(.+)$", re.IGNORECASE)


KICKSTARTER_COLUMNS: dict[str, tuple[str, ...]] = {
    "backer number": (PLEDGE_KEY,),
    # 2013's `Backer Id` numbers pledges within one project: a pledge key, never a person's id.
    "backer id": (PLEDGE_KEY,),
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
    # Each set needs at least one of its headers present.
    any_of: tuple[frozenset[str], ...] = ()
    # Headers that rule the platform out (a damaged Kickstarter report is not Gamefound's).
    none_of: frozenset[str] = frozenset()

    def matches(self, present: set[str]) -> bool:
        """Whether a set of normalized headers satisfies this signature."""
        return (
            self.all_of <= present
            and all(options & present for options in self.any_of)
            and not self.none_of & present
        )

    def missing(self, present: set[str]) -> list[str]:
        """The expected headers (as written) that `present` lacks."""
        return [
            h
            for h in self.expected
            if not ({normalize_header(h)} | HEADER_ALIASES.get(normalize_header(h), set()))
            & present
        ]


# Alternative spellings that satisfy an expected header.
HEADER_ALIASES: dict[str, set[str]] = {"e-mail": {"email"}, "pledge id": {"order no."}}

SIGNATURES: tuple[Signature, ...] = (
    Signature(
        "backerkit",
        "funds added in backerkit",
        frozenset({"funds added in backerkit"}),
        ("Id", "Email", "Pledge Amount", "Funds Added in BackerKit"),
    ),
    Signature(
        "backerkit",
        "service guid + pledge status + survey answered at",
        frozenset({"service guid", "pledge status", "survey answered at"}),
        ("Id", "Service Guid", "Email", "Pledge Amount", "Pledge Status", "Survey Answered At"),
    ),
    Signature(
        "indiegogo",
        "perk id + perk + pledge id or order no.",
        frozenset({"perk id", "perk"}),
        ("Pledge ID", "Email", "Amount", "Perk ID", "Perk"),
        any_of=(frozenset({"pledge id", "order no."}),),
    ),
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
    Signature(
        "gamefound",
        "backer name + e-mail + pledge amount",
        frozenset({"backer name", "pledge amount"}),
        ("Backer name", "E-mail", "Pledge amount"),
        any_of=(frozenset({"e-mail", "email"}),),
        none_of=frozenset({"backer uid", "backer id", "pledged status"}),
    ),
)
PLATFORMS = ("kickstarter", "indiegogo", "backerkit", "gamefound")
# The detection report's signature when the caller named the platform.
FORCED_SIGNATURE = "forced by caller"
# Which platform an unknown layout is said to be closest to when several miss equally.
CLOSEST_TIE_ORDER = PLATFORMS


def detect_platform(headers: Sequence[str]) -> Signature:
    """Return the first signature (in precedence order) the headers satisfy."""
    present = {normalize_header(h) for h in headers}
    for signature in SIGNATURES:
        if signature.matches(present):
            return signature
    raise _closest_miss(present)


def _closest_miss(present: set[str]) -> UnknownLayoutError:
    candidates = [s for s in SIGNATURES if not s.none_of & present]
    best = min(
        candidates,
        key=lambda s: (
            len(s.missing(present)) / len(s.expected),
            CLOSEST_TIE_ORDER.index(s.platform),
        ),
    )
    return UnknownLayoutError(best.platform, best.missing(present))


LAYOUT_BUILDERS = {
    "backerkit": backerkit_layout,
    "indiegogo": indiegogo_layout,
    "gamefound": gamefound_layout,
}


@lru_cache(maxsize=256)
def resolve_layout(
    headers: tuple[str, ...],
    platform: str | None = None,
    mapping: ColumnMapping | None = None,
) -> Layout:
    """Map every column of the header row: by an explicit mapping when given, else by the
    forced platform, else by the detected one."""
    if mapping is not None:
        return mapping_layout(headers, mapping)
    if platform is None:
        signature = detect_platform(headers)
        platform, signature_name = signature.platform, signature.name
    elif platform not in PLATFORMS:
        raise UnsupportedPlatformError(
            f"unsupported platform {platform!r}; supported: {', '.join(PLATFORMS)}"
            + (" (a custom layout needs its column mapping)" if platform == "custom" else "")
        )
    else:
        signature_name = FORCED_SIGNATURE
    if platform in LAYOUT_BUILDERS:
        return LAYOUT_BUILDERS[platform](headers, signature_name)
    return _kickstarter_layout(headers, signature_name)


def _kickstarter_variant(names: list[str]) -> str:
    present = set(names)
    if {"pledged at (utc)", "amount due", "pledge over time", "late pledge"} & present:
        variant = "2024+"
    elif {"backing minimum", "bonus support", "fulfillment status"} & present:
        variant = "2020+"
    elif "reward title" in present:
        variant = "2017-2019"
    elif "backer id" in present:
        variant = "2013"
    elif {"reward id", "shipping amount"} & present:
        # No Reward Title: the 2014-2017 layout, with Billing columns or without (2015 has them).
        variant = "2014-2017"
    else:
        variant = "2014-2019"  # the no-reward file's header is the same in those years
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
        ):
            # Whatever its name holds (`Gloomhaven: Jaws of the Lion`): the upload's values
            # decide, `pledgeflow.quantity_columns`.
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
