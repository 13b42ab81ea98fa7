"""BackerKit's backer export, 2017 layout (platform-formats.md section 3).

It has no person id: `Id` numbers BackerKit's pledges (the pledge key) and `Service Guid`, a
small integer on Kickstarter rows, is the platform's per-project backer number, kept in answers.

Money is a plain decimal with no currency (the project's currency applies); every column after
`Total Spent` is a SKU whose cell counts the units owed (pledge-level items and add-ons).
"""

from __future__ import annotations

from schemas.layout import EMAIL, PLEDGE_KEY
from schemas.platform_layout import PlatformLayout, Signature, Variant

BACKERKIT = PlatformLayout(
    platform="backerkit",
    signatures=(
        Signature(
            "funds added in backerkit",
            ("Funds Added in BackerKit",),
            ("Id", "Email", "Pledge Amount", "Funds Added in BackerKit"),
        ),
        Signature(
            "service guid + pledge status + survey answered at",
            ("Service Guid", "Pledge Status", "Survey Answered At"),
            ("Id", "Service Guid", "Email", "Pledge Amount", "Pledge Status", "Survey Answered At"),
        ),
    ),
    columns={
        "Id": (PLEDGE_KEY,),
        "Reward Id": ("reward_id",),
        "Name": ("backer_name",),
        "Email": (EMAIL,),
        "Address Name": ("shipping_name",),
        "Address Line 1": ("shipping_address_1",),
        "Address Line 2": ("shipping_address_2",),
        "Address City": ("shipping_city",),
        "Address State": ("shipping_state",),
        "Address Country": ("shipping_country_code", "country"),
        "Address Postal Code": ("shipping_postal_code",),
        "Address Phone Number": ("shipping_phone", "phone"),
        "Pledge Amount": ("amount",),
        "Pledge Status": ("status",),
        "Pledged At": ("pledged_at",),
        "Survey Answered At": ("responded_at",),
        "Full Country": ("shipping_country_name",),
        "Reward Price": ("reward_minimum",),
        "Pledge Level Shipping Subtotal": ("shipping_amount",),
    },
    required=(("Id", PLEDGE_KEY), ("Email", EMAIL)),
    variants=(Variant("2017 backer export, {items} SKU columns"),),
    # Mapped and also kept whole in answers: only the title (before " - ") names the reward.
    also_answers={"Reward Description": "reward_title"},
    items_after="Total Spent",
    fallbacks=(("backer_name", "shipping_name"),),
    title_separator=" - ",
)
