"""Indiegogo's classic contributions CSV (platform-formats.md section 2).

45 columns, of which `Item Name`, `Item SKU` and `Option 1-3` repeat four times: the layout
maps by column index, never by header name. Each `Item Name` cell names one unit of an item.
"""

from __future__ import annotations

from schemas.layout import EMAIL, PLEDGE_KEY
from schemas.platform_layout import PlatformLayout, Signature, Variant

INDIEGOGO = PlatformLayout(
    platform="indiegogo",
    signatures=(
        Signature(
            "perk id + perk + pledge id or order no.",
            ("Perk ID", "Perk"),
            ("Pledge ID", "Email", "Amount", "Perk ID", "Perk"),
            any_of=(("Pledge ID", "Order No."),),
        ),
    ),
    columns={
        "Pledge ID": (PLEDGE_KEY,),
        "Fulfillment Status": ("status",),
        "Funding Date": ("pledged_at",),
        "Name": ("backer_name",),
        "Email": (EMAIL,),
        "Amount": ("amount",),
        "Shipping Fees": ("shipping_amount",),
        "Perk ID": ("reward_id",),
        "Perk": ("reward_title",),
        "Shipping Name": ("shipping_name",),
        "Shipping Phone Number": ("shipping_phone", "phone"),
        "Shipping Address": ("shipping_address_1",),
        "Shipping Address 2": ("shipping_address_2",),
        "Shipping City": ("shipping_city",),
        "Shipping State/Province": ("shipping_state",),
        "Shipping Zip/Postal Code": ("shipping_postal_code",),
        # Country names or codes: the export's form is not documented, so the backer's country
        # (a 2-letter code elsewhere) is left to the survey's country name.
        "Shipping Country": ("shipping_country_name",),
    },
    required=(("Pledge ID", PLEDGE_KEY), ("Email", EMAIL)),
    variants=(Variant("contributions, {item_groups} item groups"),),
    # The SKU also names the item product; it stays in answers since one item may carry
    # several SKUs across rows.
    item_groups=("Item Name", "Item SKU"),
    # `Order No.` is unique too; it keys the pledge when `Pledge ID` is absent.
    key_fallback="Order No.",
)
