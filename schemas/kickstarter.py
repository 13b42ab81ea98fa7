"""Kickstarter's backer reports, 2013 to today (platform-formats.md section 1): each year's
header row and the platform layout that reads them.

The header rows here are the one list of Kickstarter's columns: the synthetic reports of the
benchmark and the tests' fixtures are written with them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from schemas.layout import EMAIL, PLEDGE_KEY
from schemas.platform_layout import PlatformLayout, Signature, Variant

# A report's columns: the pledge's, then (2020+) add-on and item columns, then the survey's.
BACKER = ("Backer Number", "Backer UID", "Backer Name", "Email")
SHIPPING = ("Shipping Country", "Shipping Amount")
REWARD_2014 = ("Reward Minimum", "Reward ID")
PLEDGED = ("Pledge Amount", "Pledged At")
PLEDGE_2014 = (*PLEDGED, "Rewards Sent?", "Pledged Status", "Notes")
BILLING = ("Billing State/Province", "Billing Country")
# 2020 renamed Reward Minimum, dropped Rewards Sent? and added Bonus Support.
REWARD_2020 = ("Reward Title", "Backing Minimum", "Reward ID", "Bonus Support")
STATUS_2020 = ("Fulfillment Status", "Pledged Status", "Notes")
# 2024's columns for late pledges and pledges paid in instalments.
LATE_2024 = ("Late Pledge", "Pledge Over Time", "Amount Due", "Amount Paid")
SURVEY = (
    "Survey Response",
    "Shipping Name",
    "Shipping Address 1",
    "Shipping Address 2",
    "Shipping City",
    "Shipping State",
    "Shipping Postal Code",
    "Shipping Country Name",
    "Shipping Country Code",
)
SURVEY_2017 = (*SURVEY, "Shipping Phone Number", "Shipping Delivery Notes")

# Each year's report: (the pledge's columns, the survey's columns).
REPORTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # 2013: a per-project `Backer Id`, no person id, no reward id.
    "2013": (("Backer Id", *BACKER[2:], *SHIPPING, "Reward Minimum", *PLEDGE_2014), SURVEY),
    "2014": ((*BACKER, *SHIPPING, *REWARD_2014, *PLEDGE_2014), SURVEY),
    # 2015: the Billing columns, still no Reward Title.
    "2015": ((*BACKER, *SHIPPING, *REWARD_2014, *PLEDGE_2014, *BILLING), SURVEY),
    "2017": (
        (*BACKER, *SHIPPING, "Reward Title", *REWARD_2014, *PLEDGE_2014, *BILLING),
        SURVEY_2017,
    ),
    "2020": ((*BACKER, *SHIPPING, *REWARD_2020, *PLEDGED, *STATUS_2020), SURVEY_2017),
    # 2024: pledge times said to be UTC.
    "2024": (
        (
            *BACKER,
            *SHIPPING,
            *REWARD_2020,
            "Pledge Amount",
            "Pledged At (UTC)",
            *STATUS_2020,
            *LATE_2024,
        ),
        SURVEY_2017,
    ),
    # A project without rewards, 2014-2019: no reward, shipping or survey columns.
    "no-reward": ((*BACKER, *PLEDGED, "Pledged Status", "Notes", *BILLING), ()),
}


def report_headers(
    year: str,
    addons: Sequence[tuple[int, str]] = (),
    items: Sequence[str] = (),
    questions: Sequence[str] = (),
) -> list[str]:
    """The header row of `year`'s report with these add-ons (id, name), item columns and
    survey questions."""
    pledge, survey = REPORTS[year]
    return [
        *pledge,
        *(f"[Addon: {addon_id}] {name}" for addon_id, name in addons),
        *items,
        *survey,
        *questions,
    ]


KICKSTARTER = PlatformLayout(
    platform="kickstarter",
    signatures=(
        Signature(
            "backer uid + pledged status",
            ("Backer UID", "Pledged Status"),
            ("Backer Number", "Backer UID", "Email", "Pledge Amount", "Pledged Status"),
        ),
        Signature(
            "backer id + pledged status + rewards sent?",
            ("Backer Id", "Pledged Status", "Rewards Sent?"),
            ("Backer Id", "Email", "Pledge Amount", "Pledged Status", "Rewards Sent?"),
        ),
    ),
    columns={
        "Backer Number": (PLEDGE_KEY,),
        # 2013's `Backer Id` numbers pledges within one project: a pledge key, never a person's id.
        "Backer Id": (PLEDGE_KEY,),
        "Backer UID": ("backer_external_id",),
        "Backer Name": ("backer_name",),
        "Email": (EMAIL,),
        "Shipping Country": ("country",),
        "Shipping Amount": ("shipping_amount",),
        "Reward Title": ("reward_title",),
        "Reward Minimum": ("reward_minimum",),
        "Backing Minimum": ("reward_minimum",),
        "Reward ID": ("reward_id",),
        "Pledge Amount": ("amount",),
        "Pledged At": ("pledged_at",),
        "Pledged At (UTC)": ("pledged_at",),
        "Pledged Status": ("status",),
        "Survey Response": ("responded_at",),
        "Shipping Name": ("shipping_name",),
        "Shipping Address 1": ("shipping_address_1",),
        "Shipping Address 2": ("shipping_address_2",),
        "Shipping City": ("shipping_city",),
        "Shipping State": ("shipping_state",),
        "Shipping Postal Code": ("shipping_postal_code",),
        "Shipping Country Name": ("shipping_country_name",),
        "Shipping Country Code": ("shipping_country_code",),
        "Shipping Phone Number": ("shipping_phone", "phone"),
        "Shipping Delivery Notes": ("delivery_notes",),
    },
    required=(("Backer Number", PLEDGE_KEY), ("Email", EMAIL)),
    variants=(
        Variant(
            "2024+",
            ("Pledged At (UTC)", "Amount Due", "Pledge Over Time", "Late Pledge"),
            has_items=True,
        ),
        Variant(
            "2020+",
            ("Backing Minimum", "Bonus Support", "Fulfillment Status"),
            has_items=True,
        ),
        Variant("2017-2019", ("Reward Title",)),
        Variant("2013", ("Backer Id",)),
        # No Reward Title: the 2014-2017 layout, with Billing columns or without (2015 has them).
        Variant("2014-2017", ("Reward ID", "Shipping Amount")),
        Variant("2014-2019"),  # the no-reward file's header is the same in those years
    ),
    variant_suffixes=((" no-reward", ("Reward ID", "Reward Title", "Shipping Amount")),),
    # Known columns with no canonical field: kept in survey.answers, never items.
    answers_only=frozenset(
        {
            "Notes",
            "Rewards Sent?",
            "Fulfillment Status",
            "Bonus Support",
            *BILLING,
            *LATE_2024,
        }
    ),
    addon_pattern=re.compile(r"^\[addon:\s*(\d+)\]\s*(.+)$", re.IGNORECASE),
    items_before="Survey Response",
)
