"""A platform's export described as data, and the one builder that maps a header row by it.

A `PlatformLayout` says how a platform's files are recognised (signatures), which header feeds
which canonical field, where its items and add-ons stand, how its pledges are keyed and what its
variants are called. `build_layout` reads a header row through it into the positional `Layout`
the mapper uses. Headers in a platform layout are written as the platform writes them; they are
compared normalized (`normalize_header`).

Money and date formats are not part of it: every platform's money cells go through one parser
and each upload's date style is decided from its values (`pledgeflow.upload_dates`), since the
exports of one platform differ in both across years and locales.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

from schemas.layout import (
    PLEDGE_KEY,
    Layout,
    UnknownLayoutError,
    answer_keys,
    clean_label,
    normalize_header,
)


def _normalized(headers: Iterable[str]) -> frozenset[str]:
    return frozenset(normalize_header(h) for h in headers)


@dataclass(frozen=True)
class Signature:
    """Headers whose presence identifies a platform, tried in precedence order."""

    name: str
    all_of: tuple[str, ...]
    # The headers a file of this platform is expected to have; used to name what an
    # unknown layout lacks relative to its closest platform.
    expected: tuple[str, ...]
    # Each group needs at least one of its headers present; any one of them also stands for an
    # expected header of the group (`Order No.` for `Pledge ID`).
    any_of: tuple[tuple[str, ...], ...] = ()
    # Headers that rule the platform out (a damaged Kickstarter report is not Gamefound's).
    none_of: tuple[str, ...] = ()
    # Set by the platform layout that lists the signature.
    platform: str = ""

    @cached_property
    def _all(self) -> frozenset[str]:
        return _normalized(self.all_of)

    @cached_property
    def _groups(self) -> tuple[frozenset[str], ...]:
        return tuple(_normalized(group) for group in self.any_of)

    def ruled_out(self, present: set[str]) -> bool:
        """Whether a set of normalized headers holds a header that rules the platform out."""
        return bool(_normalized(self.none_of) & present)

    def matches(self, present: set[str]) -> bool:
        """Whether a set of normalized headers satisfies this signature."""
        return (
            self._all <= present
            and all(group & present for group in self._groups)
            and not self.ruled_out(present)
        )

    def missing(self, present: set[str]) -> list[str]:
        """The expected headers (as written) that `present` lacks."""
        out = []
        for header in self.expected:
            name = normalize_header(header)
            standing_in = {name}.union(*(g for g in self._groups if name in g))
            if not standing_in & present:
                out.append(header)
        return out


@dataclass(frozen=True)
class Variant:
    """One named form of a platform's export: the first whose headers are present names it."""

    name: str
    # Any one of these headers marks the variant; none given: the variant of every other file.
    when_any: tuple[str, ...] = ()
    # Columns standing between the pledge's columns and `items_before` are items (Kickstarter
    # 2020+), whatever their names.
    has_items: bool = False

    def matches(self, present: set[str]) -> bool:
        """Whether a set of normalized headers marks this variant."""
        return not self.when_any or bool(_normalized(self.when_any) & present)


@dataclass(frozen=True)
class PlatformLayout:
    """What pledgeflow knows of one platform's export, interpreted by `build_layout`."""

    platform: str
    # Tried in order, after the signatures of the platforms listed before this one.
    signatures: tuple[Signature, ...]
    # Header -> the canonical fields it feeds; a field takes the first header that feeds it, a
    # later header feeding it again is kept in answers.
    columns: Mapping[str, tuple[str, ...]]
    # (header, field) a file cannot do without; the header is named when the field is unmapped.
    required: tuple[tuple[str, str], ...]
    # The first variant that matches names the file; `{items}` and `{item_groups}` count them.
    variants: tuple[Variant, ...]
    # (suffix, headers): the suffix is added to the variant when none of the headers is present.
    variant_suffixes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Known headers that only ever go to answers, never to items.
    answers_only: frozenset[str] = frozenset()
    # Header -> field it feeds while that field is unmapped; the column is also kept in answers.
    also_answers: Mapping[str, str] = field(default_factory=dict)
    # `[Addon: id] name` columns: the pattern's groups are the add-on's id and name.
    addon_pattern: re.Pattern[str] | None = None
    # Items stand before this header, in a variant `has_items` (Kickstarter's `Survey Response`);
    # their values decide whether they are items (`Layout.items_by_value`).
    items_before: str | None = None
    # Every named column after this header is an item counted per row (BackerKit's SKUs).
    items_after: str | None = None
    # (item name header, item SKU header): each item name column names one unit of an item, the
    # SKU column right after it (when there) its SKU.
    item_groups: tuple[str, str] | None = None
    # A second pledge key, used when no column maps to the pledge key (Indiegogo's `Order No.`).
    key_fallback: str | None = None
    # Without a pledge key column, pledges are keyed by the trimmed, lower-cased email.
    key_from_email: bool = False
    # Passed to the `Layout` as they are.
    fallbacks: tuple[tuple[str, str], ...] = ()
    title_separator: str | None = None

    def __post_init__(self) -> None:
        if not self.variants or self.variants[-1].when_any:
            raise ValueError(f"{self.platform}: the last variant must name every other file")
        # Each signature names the platform it identifies: this one.
        signatures = tuple(replace(s, platform=self.platform) for s in self.signatures)
        object.__setattr__(self, "signatures", signatures)

    @cached_property
    def column_fields(self) -> dict[str, tuple[str, ...]]:
        """`columns` keyed by normalized header."""
        return {normalize_header(h): fields for h, fields in self.columns.items()}

    @cached_property
    def answer_names(self) -> frozenset[str]:
        """`answers_only`, normalized."""
        return _normalized(self.answers_only)

    @cached_property
    def also_answer_fields(self) -> dict[str, str]:
        """`also_answers` keyed by normalized header."""
        return {normalize_header(h): f for h, f in self.also_answers.items()}


def build_layout(spec: PlatformLayout, headers: tuple[str, ...], signature: str) -> Layout:
    """Map every column of a header row the way a platform layout says."""
    names = [normalize_header(h) for h in headers]
    present = set(names)
    variant = next(v for v in spec.variants if v.matches(present))
    items_from = _after(names, spec.items_after)
    items_until = _first(names, spec.items_before) if variant.has_items else 0
    groups_name, groups_sku = (
        (normalize_header(spec.item_groups[0]), normalize_header(spec.item_groups[1]))
        if spec.item_groups
        else (None, None)
    )
    fields: dict[str, int] = {}
    addons: list[tuple[int, str, str]] = []
    items: list[tuple[int, str]] = []
    groups: list[tuple[int, int | None]] = []
    answers: list[tuple[int, str]] = []
    # A column is the first that applies of: an item after `items_after`, the first column of
    # its canonical fields, an add-on, an item group, an item before `items_before`, an answer.
    for index, name in enumerate(names):
        label = clean_label(headers[index])
        canonical = spec.column_fields.get(name, ())
        if name and index >= items_from:
            items.append((index, label))
        elif canonical and not any(f in fields for f in canonical):
            fields.update(dict.fromkeys(canonical, index))
        elif spec.addon_pattern and (match := spec.addon_pattern.match(label)):
            addons.append((index, match.group(1), match.group(2).strip()))
        elif name and name == groups_name:
            sku = index + 1 if index + 1 < len(names) and names[index + 1] == groups_sku else None
            groups.append((index, sku))
        elif name and index < items_until and name not in spec.answer_names and not canonical:
            # Whatever its name holds (`Gloomhaven: Jaws of the Lion`): the upload's values
            # decide, `pledgeflow.quantity_columns`.
            items.append((index, label))
        else:
            also = spec.also_answer_fields.get(name)
            if also and also not in fields:
                fields[also] = index
            answers.append((index, headers[index]))
    if PLEDGE_KEY not in fields and spec.key_fallback:
        fallback = normalize_header(spec.key_fallback)
        if fallback in present:
            fields[PLEDGE_KEY] = names.index(fallback)
            answers = [(i, h) for i, h in answers if i != fields[PLEDGE_KEY]]
    missing = [header for header, f in spec.required if f not in fields]
    if missing:
        raise UnknownLayoutError(spec.platform, missing)
    name = variant.name.format(items=len(items), item_groups=len(groups))
    name += "".join(
        suffix for suffix, absent in spec.variant_suffixes if not _normalized(absent) & present
    )
    return Layout(
        platform=spec.platform,
        variant=name,
        signature=signature,
        headers=headers,
        fields=fields,
        addon_columns=tuple(addons),
        item_columns=tuple(items),
        answer_columns=answer_keys(answers),
        item_name_groups=tuple(groups),
        fallbacks=spec.fallbacks,
        title_separator=spec.title_separator,
        key_from_email=spec.key_from_email and PLEDGE_KEY not in fields,
        items_by_value=spec.items_before is not None,
    )


def _first(names: list[str], header: str | None) -> int:
    """The index of `header`'s first column, or the row's length when it has none."""
    name = normalize_header(header) if header else None
    return names.index(name) if name in names else len(names)


def _after(names: list[str], header: str | None) -> int:
    """The index right after `header`'s first column, or the row's length when it has none."""
    name = normalize_header(header) if header else None
    return names.index(name) + 1 if name in names else len(names)
