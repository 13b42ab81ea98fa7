"""A BackerKit backer export shaped like a real one of a campaign with 13 reward tiers.

Real shape (platform-formats.md section 3): every field quoted, a BOM, CRLF, a multi-line
`Full Address`, plain one-decimal money with no currency, BackerKit's test backer first, SKU
count columns after `Total Spent`. The tiers are priced 0 to 999; several share a product name
before ` | ` ("RollR 60 | Launch Special - …" 249.0, "RollR 60 | Two Pack - …" 469.0, "BikR Kit
| Four Pack - …" 999.0), and two share a whole title ("RollR 30 | Early Bird"), so only the
`Reward Id` tells them apart. Two exports of the campaign, two weeks apart: the newer one has
more backers, a changed address, changed SKU counts, a failed pledge collected, a re-tiered
pledge. People are fake.
"""

from __future__ import annotations

import copy
from decimal import Decimal

from tests.exports_backerkit import Backer, render

# Reward Id -> (Reward Price, Reward Description), in the order BackerKit lists tiers.
TIERS: dict[str, tuple[str, str]] = {
    "5101": ("0.0", "Thank You - our thanks and every project update"),
    "5102": ("30.0", "BikR Clip | Single - one BikR clip"),
    "5103": ("55.0", "BikR Clip | Two Pack - two BikR clips"),
    "5104": ("99.0", "RollR 30 | Early Bird - one RollR 30 for the first 100 backers"),
    "5105": ("109.0", "RollR 30 | Early Bird - one RollR 30 for the next 200 backers"),
    "5106": ("199.0", "RollR 60 | Early Bird - one RollR 60, limited"),
    "5107": ("249.0", "RollR 60 | Launch Special - one RollR 60 - with a carry bag"),
    "5108": ("289.0", "RollR 60 | Retail - one RollR 60"),
    "5109": ("469.0", "RollR 60 | Two Pack - two RollR 60s and two carry bags"),
    "5110": ("349.0", "BikR Kit | Single - one BikR kit"),
    "5111": ("649.0", "BikR Kit | Two Pack - two BikR kits"),
    "5112": ("999.0", "BikR Kit | Four Pack - four BikR kits, free shipping"),
    "5113": ("599.0", "RollR 60 + BikR Kit | Combo - one of each"),
}
# What each tier puts in the SKU columns (BH, BO, CL, D60ROLLR).
TIER_SKUS: dict[str, dict[str, str]] = {
    "5101": {},
    "5102": {"CL": "1"},
    "5103": {"CL": "2"},
    "5104": {"BO": "1"},
    "5105": {"BO": "1"},
    "5106": {"D60ROLLR": "1"},
    "5107": {"D60ROLLR": "1", "BH": "1"},
    "5108": {"D60ROLLR": "1"},
    "5109": {"D60ROLLR": "2", "BH": "2"},
    "5110": {"BO": "1", "CL": "1"},
    "5111": {"BO": "2", "CL": "2"},
    "5112": {"BO": "4", "CL": "4"},
    "5113": {"D60ROLLR": "1", "BO": "1", "CL": "1"},
}


def title(reward_id: str) -> str:
    """The tier's name: its description's title, the text before ` - `."""
    return TIERS[reward_id][1].split(" - ", 1)[0]


def _backer(number: int, reward_id: str, **changes: object) -> Backer:
    price = TIERS[reward_id][0]
    row = Backer(
        number,
        f"backer{number}@example.com",
        f"Backer {number}",
        guid=str(100 + number),
        reward=reward_id,
        amount=str(Decimal(price) + (Decimal("10.0") if number % 4 == 0 else 0)),
        pledged_at=f"2017-07-{1 + number % 28:02d} 0{number % 10}:15:44 -0700",
        survey_at="" if number % 5 == 0 else f"2017-08-{1 + number % 28:02d} 10:00:00 -0700",
        skus=dict(TIER_SKUS[reward_id]),
    )
    for name, value in changes.items():
        setattr(row, name, value)
    return row


def older_export() -> list[Backer]:
    """The export as it stood first: the test backer, then two backers on every tier."""
    rows = [
        Backer(
            1,
            "tester+domestic@example.com",
            "Test Backer",
            platform="Manual",
            reward="5101",
            amount="0.0",
        )
    ]
    number = 2
    for reward_id in TIERS:
        for _ in range(2):
            rows.append(_backer(number, reward_id))
            number += 1
    rows[5].status = "failed"
    rows[5].funds_added, rows[5].amount = rows[5].amount, "0.0"
    return rows


def newer_export() -> list[Backer]:
    """Two weeks later: the failed pledge collected, an address and SKU counts changed, one
    pledge moved to another tier, one backer renamed, and five new backers."""
    rows = copy.deepcopy(older_export())
    rows[5].status = "collected"
    rows[5].amount, rows[5].funds_added = rows[5].funds_added, "0.0"
    rows[7].address_name = "Moved Person"
    rows[9].skus = {**rows[9].skus, "BH": "3"}
    rows[11].reward = "5112"
    rows[11].amount = "999.0"
    rows[11].skus = dict(TIER_SKUS["5112"])
    rows[13].name = "Renamed Backer"
    number = len(rows) + 1
    for reward_id in ("5107", "5109", "5112", "5104", "5105"):
        rows.append(_backer(number, reward_id))
        number += 1
    return rows


def export(rows: list[Backer]) -> bytes:
    """The file's bytes."""
    return render(rows, TIERS)
