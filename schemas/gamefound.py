"""Gamefound-style pledge files: the pledge-import template's columns (platform-formats.md 4).

`Backer number` is optional in that template. Without the column, pledges are keyed by the
trimmed, lower-cased email: Gamefound holds one pledge per backer and project, so the email
identifies the pledge, and re-importing the file changes nothing. With the column, a blank cell
is rejected as `missing_key` like on every other platform, rather than mixing the two keys.
"""

from __future__ import annotations

from schemas.layout import (
    EMAIL,
    PLEDGE_KEY,
    Layout,
    UnknownLayoutError,
    answer_keys,
    normalize_header,
)

COLUMNS: dict[str, tuple[str, ...]] = {
    "backer number": (PLEDGE_KEY,),
    "backer name": ("backer_name",),
    "e-mail": (EMAIL,),
    "email": (EMAIL,),
    "reward title": ("reward_title",),
    "pledge amount": ("amount",),
}


def gamefound_layout(headers: tuple[str, ...], signature: str) -> Layout:
    """Map an import-template header row; `Bonus support` and any other column are answers."""
    fields: dict[str, int] = {}
    answers: list[tuple[int, str]] = []
    for index, name in enumerate(normalize_header(h) for h in headers):
        if name in COLUMNS and not any(f in fields for f in COLUMNS[name]):
            for canonical in COLUMNS[name]:
                fields[canonical] = index
        else:
            answers.append((index, headers[index]))
    if EMAIL not in fields:
        raise UnknownLayoutError("gamefound", ["E-mail"])
    keyed_by_email = PLEDGE_KEY not in fields
    return Layout(
        platform="gamefound",
        variant="pledge import template" + (", keyed by email" if keyed_by_email else ""),
        signature=signature,
        headers=headers,
        fields=fields,
        answer_columns=answer_keys(answers),
        key_from_email=keyed_by_email,
    )
