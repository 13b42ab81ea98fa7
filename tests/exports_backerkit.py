"""Generate BackerKit backer exports (2017 layout): every field quoted, a BOM, multi-line
`Full Address`, plain decimal money, SKU count columns after `Total Spent`; fake people."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

FIXED = [
    "Id",
    "Service Guid",
    "Platform",
    "Reward Id",
    "Name",
    "Email",
    "Address Name",
    "Address Line 1",
    "Address Line 2",
    "Address City",
    "Address State",
    "Address Country",
    "Address Postal Code",
    "Address Phone Number",
    "Pledge Amount",
    "Pledge Status",
    "Notes",
    "Public Notes",
    "Pledged At",
    "Survey Answered At",
    "Full Address",
    "Full Country",
    "Reward Price",
    "Reward Description",
    "Order Placed",
    "Order ID",
    "Order Status",
    "Order Charged",
    "Charge Token",
    "Funds Added in BackerKit",
    "Add-on Shipping Subtotal",
    "Pledge Level Shipping Subtotal",
    "Total Spent",
]
SKUS = ["BH", "BO", "CL", "D60ROLLR"]
HEADERS = [*FIXED, *SKUS]
REWARDS = {
    "11": ("249.0", "Core Box - the game, two dice bags"),
    "12": ("30.0", "Deluxe Box - everything in the core box, and more"),
}


@dataclass
class Backer:
    """One BackerKit row."""

    id: int
    email: str
    name: str
    address_name: str = ""
    guid: str = ""
    platform: str = "kickstarter"
    reward: str = "11"
    amount: str = "249.0"
    status: str = "collected"
    funds_added: str = "0.0"
    pledged_at: str = "2017-08-15 07:15:44 -0700"
    survey_at: str = "2017-08-20 10:00:00 -0700"
    skus: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


def cells(b: Backer, rewards: dict[str, tuple[str, str]] | None = None) -> list[str]:
    """Every cell of one row, in header order (`rewards`: Reward Id -> price, description)."""
    price, description = (rewards or REWARDS)[b.reward]
    who = b.address_name or b.name
    values = {
        "Id": str(b.id),
        "Service Guid": b.guid,
        "Platform": b.platform,
        "Reward Id": b.reward,
        "Name": b.name,
        "Email": b.email,
        "Address Name": who,
        "Address Line 1": "1 Main St",
        "Address City": "Springfield",
        "Address State": "IL",
        "Address Country": "US",
        "Address Postal Code": "62701",
        "Address Phone Number": "555-0100",
        "Pledge Amount": b.amount,
        "Pledge Status": b.status,
        "Pledged At": b.pledged_at,
        "Survey Answered At": b.survey_at,
        "Full Address": f"{who}\n1 Main St\nSpringfield, IL 62701\nUnited States of America",
        "Full Country": "United States of America",
        "Reward Price": price,
        "Reward Description": description,
        "Order Placed": "09/29/17",
        "Order ID": f"O-{b.id}",
        "Order Status": "locked_down",
        "Order Charged": "09/29/17",
        "Funds Added in BackerKit": b.funds_added,
        "Add-on Shipping Subtotal": "0.0",
        "Pledge Level Shipping Subtotal": "10.0",
        "Total Spent": b.amount,
    }
    return [b.extra.get(h, b.skus.get(h, values.get(h, "0" if h in SKUS else ""))) for h in HEADERS]


def render(rows: Sequence[Backer], rewards: dict[str, tuple[str, str]] | None = None) -> bytes:
    """Render a whole export: BOM, every field quoted, CRLF line ends."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(HEADERS)
    for row in rows:
        writer.writerow(cells(row, rewards))
    return b"\xef\xbb\xbf" + out.getvalue().encode()


def sample() -> list[Backer]:
    """Nine rows: BackerKit's test backer first, a blank Name falling back to the address
    name, a failed pledge, an email that pledges twice, and three bad rows (5, 6, 9)."""
    return [
        Backer(
            1, "tester+domestic@example.com", "Test Backer", platform="Manual", skus={"BH": "1"}
        ),
        Backer(2, "ada@example.com", "Ada", guid="101", skus={"BH": "1", "CL": "2"}),
        Backer(
            3,
            "cy@example.com",
            "Cy",
            guid="102",
            reward="12",
            amount="0.0",
            status="failed",
            funds_added="30.0",
            skus={"BO": "1"},
        ),
        Backer(4, "bob@example.com", "", address_name="Bob Builder", guid="103", survey_at=""),
        Backer(5, "", "No Email", guid="104"),
        Backer(6, "dee@example.com", "Dee", guid="105", pledged_at="yesterday"),
        Backer(
            7,
            "eli@example.com",
            "Eli",
            guid="106",
            reward="12",
            amount="1249.5",
            skus={"D60ROLLR": "3", "BH": "1"},
        ),
        Backer(8, "Ada@Example.com", "Ada L.", guid="107", skus={"BO": "1"}),
        Backer(9, "flo@example.com", "Flo", guid="108", skus={"CL": "two"}),
    ]
