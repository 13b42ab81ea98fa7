"""BackerKit's backer export, 2017 layout (platform-formats.md section 3).

It has no person id: `Id` numbers BackerKit's pledges (the pledge key) and `Service Guid`, a
small integer on Kickstarter rows, is the platform's per-project backer number, kept in answers.

Money is a plain decimal with no currency (the project's currency applies); every column after
`Total Spent` is a SKU whose cell counts the units owed (pledge-level items and add-ons).
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
    "id": (PLEDGE_KEY,),
    "reward id": ("reward_id",),
    "name": ("backer_name",),
    "email": (EMAIL,),
    "address name": ("shipping_name",),
    "address line 1": ("shipping_address_1",),
    "address line 2": ("shipping_address_2",),
    "address city": ("shipping_city",),
    "address state": ("shipping_state",),
    "address country": ("shipping_country_code", "country"),
    "address postal code": ("shipping_postal_code",),
    "address phone number": ("shipping_phone", "phone"),
    "pledge amount": ("amount",),
    "pledge status": ("status",),
    "pledged at": ("pledged_at",),
    "survey answered at": ("responded_at",),
    "full country": ("shipping_country_name",),
    "reward price": ("reward_minimum",),
    "pledge level shipping subtotal": ("shipping_amount",),
}
# Mapped and also kept whole in answers: only the title (before " - ") names the reward.
ALSO_ANSWERS = frozenset({"reward description"})
LAST_FIXED_COLUMN = "total spent"
REQUIRED = (("Id", PLEDGE_KEY), ("Email", EMAIL))


def backerkit_layout(headers: tuple[str, ...], signature: str) -> Layout:
    """Map a BackerKit header row: named columns up to `Total Spent`, then SKU counts."""
    names = [normalize_header(h) for h in headers]
    skus_from = names.index(LAST_FIXED_COLUMN) + 1 if LAST_FIXED_COLUMN in names else len(names)
    fields: dict[str, int] = {}
    items: list[tuple[int, str]] = []
    answers: list[tuple[int, str]] = []
    for index, name in enumerate(names):
        label = " ".join(headers[index].replace("\ufeff", "").split())
        if index >= skus_from and label:
            items.append((index, label))
        elif name in COLUMNS and not any(f in fields for f in COLUMNS[name]):
            for canonical in COLUMNS[name]:
                fields[canonical] = index
        else:
            if name in ALSO_ANSWERS and "reward_title" not in fields:
                fields["reward_title"] = index
            answers.append((index, headers[index]))
    missing = [header for header, field in REQUIRED if field not in fields]
    if missing:
        raise UnknownLayoutError("backerkit", missing)
    return Layout(
        platform="backerkit",
        variant=f"2017 backer export, {len(items)} SKU columns",
        signature=signature,
        headers=headers,
        fields=fields,
        item_columns=tuple(items),
        answer_columns=answer_keys(answers),
        fallbacks=(("backer_name", "shipping_name"),),
        title_separator=" - ",
    )
