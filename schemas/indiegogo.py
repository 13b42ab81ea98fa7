"""Indiegogo's classic contributions CSV (platform-formats.md section 2).

45 columns, of which `Item Name`, `Item SKU` and `Option 1-3` repeat four times: the layout
maps by column index, never by header name. Each `Item Name` cell names one unit of an item.
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
    "pledge id": (PLEDGE_KEY,),
    "fulfillment status": ("status",),
    "funding date": ("pledged_at",),
    "name": ("backer_name",),
    "email": (EMAIL,),
    "amount": ("amount",),
    "shipping fees": ("shipping_amount",),
    "perk id": ("reward_id",),
    "perk": ("reward_title",),
    "shipping name": ("shipping_name",),
    "shipping phone number": ("shipping_phone", "phone"),
    "shipping address": ("shipping_address_1",),
    "shipping address 2": ("shipping_address_2",),
    "shipping city": ("shipping_city",),
    "shipping state/province": ("shipping_state",),
    "shipping zip/postal code": ("shipping_postal_code",),
    # Country names or codes: the export's form is not documented, so the backer's country
    # (a 2-letter code elsewhere) is left to the survey's country name.
    "shipping country": ("shipping_country_name",),
}
REQUIRED = (("Pledge ID", PLEDGE_KEY), ("Email", EMAIL))


def indiegogo_layout(headers: tuple[str, ...], signature: str) -> Layout:
    """Map a contributions header row; every `Item Name` column starts an item group."""
    names = [normalize_header(h) for h in headers]
    fields: dict[str, int] = {}
    groups: list[tuple[int, int | None]] = []
    answers: list[tuple[int, str]] = []
    for index, name in enumerate(names):
        if name in COLUMNS and not any(f in fields for f in COLUMNS[name]):
            for canonical in COLUMNS[name]:
                fields[canonical] = index
        elif name == "item name":
            sku = index + 1 if index + 1 < len(names) and names[index + 1] == "item sku" else None
            groups.append((index, sku))
            # The SKU also names the item product; it stays in answers since one item may
            # carry several SKUs across rows.
        else:
            answers.append((index, headers[index]))
    if PLEDGE_KEY not in fields and "order no." in names:
        # `Order No.` is unique too; it keys the pledge when `Pledge ID` is absent.
        fields[PLEDGE_KEY] = names.index("order no.")
        answers = [(i, h) for i, h in answers if i != fields[PLEDGE_KEY]]
    missing = [header for header, field in REQUIRED if field not in fields]
    if missing:
        raise UnknownLayoutError("indiegogo", missing)
    return Layout(
        platform="indiegogo",
        variant=f"contributions, {len(groups)} item groups",
        signature=signature,
        headers=headers,
        fields=fields,
        answer_columns=answer_keys(answers),
        item_name_groups=tuple(groups),
    )
