"""Generate Kickstarter backer reports of every variant, with fake people and messy values."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field

SURVEY = [
    "Survey Response",
    "Shipping Name",
    "Shipping Address 1",
    "Shipping Address 2",
    "Shipping City",
    "Shipping State",
    "Shipping Postal Code",
    "Shipping Country Name",
    "Shipping Country Code",
]
HEADERS: dict[str, list[str]] = {
    "2013": [
        "Backer Id",
        "Backer Name",
        "Email",
        "Shipping Country",
        "Shipping Amount",
        "Reward Minimum",
        "Pledge Amount",
        "Pledged At",
        "Rewards Sent?",
        "Pledged Status",
        "Notes",
        *SURVEY,
    ],
    "2014": [
        "Backer Number",
        "Backer UID",
        "Backer Name",
        "Email",
        "Shipping Country",
        "Shipping Amount",
        "Reward Minimum",
        "Reward ID",
        "Pledge Amount",
        "Pledged At",
        "Rewards Sent?",
        "Pledged Status",
        "Notes",
        *SURVEY,
    ],
    "2017": [
        "Backer Number",
        "Backer UID",
        "Backer Name",
        "Email",
        "Shipping Country",
        "Shipping Amount",
        "Reward Title",
        "Reward Minimum",
        "Reward ID",
        "Pledge Amount",
        "Pledged At",
        "Rewards Sent?",
        "Pledged Status",
        "Notes",
        "Billing State/Province",
        "Billing Country",
        *SURVEY,
        "Shipping Phone Number",
        "Shipping Delivery Notes",
        "What Is Your Region/Continent?",
    ],
    "2020": [
        "Backer Number",
        "Backer UID",
        "Backer Name",
        "Email",
        "Shipping Country",
        "Shipping Amount",
        "Reward Title",
        "Backing Minimum",
        "Reward ID",
        "Bonus Support",
        "Pledge Amount",
        "Pledged At",
        "Fulfillment Status",
        "Pledged Status",
        "Notes",
        "[Addon: 1001] Dice Tower",
        "[Addon: 1002] Sleeves",
        "Dice Tower",
        "Wooden Insert",
        *SURVEY,
        "Shipping Phone Number",
        "Shipping Delivery Notes",
    ],
    "2024": [
        "Backer Number",
        "Backer UID",
        "Backer Name",
        "Email",
        "Shipping Country",
        "Shipping Amount",
        "Reward Title",
        "Backing Minimum",
        "Reward ID",
        "Bonus Support",
        "Pledge Amount",
        "Pledged At (UTC)",
        "Fulfillment Status",
        "Pledged Status",
        "Notes",
        "Late Pledge",
        "Pledge Over Time",
        "Amount Due",
        "Amount Paid",
        "[Addon: 1001] Dice Tower",
        "ambient one",
        *SURVEY,
        "Shipping Phone Number",
        "Shipping Delivery Notes",
        "ambient one colour: Which colour do you want?",
    ],
    "no-reward": [
        "Backer Number",
        "Backer UID",
        "Backer Name",
        "Email",
        "Pledge Amount",
        "Pledged At",
        "Pledged Status",
        "Notes",
        "Billing State/Province",
        "Billing Country",
    ],
}
VARIANT_NAMES = {
    "2013": "2013",
    "2014": "2014-2017",
    "2017": "2017-2019",
    "2020": "2020+",
    "2024": "2024+",
    "no-reward": "2017-2019 no-reward",
}
TIERS = [("Base Game", "1", 59), ("Deluxe", "2", 99), ("All In", "3", 149)]


@dataclass
class Backer:
    """One generated pledge row, before rendering for a variant."""

    number: int
    email: str
    name: str
    tier: int | None = 0
    status: str = "collected"
    pledge: str | None = None
    pledged_at: str = "2020/04/24, 05:37"
    survey_at: str = ""
    addons: tuple[int, int] = (0, 0)
    items: tuple[int, int] = (0, 0)
    notes: str = ""
    address: str = "1 Main St"
    extra: dict[str, str] = field(default_factory=dict)


def money(amount: float, style: int = 0) -> str:
    """Render an amount as Kickstarter did in different years."""
    return [f"${amount:,.2f} USD", f"${amount:,.2f}", f"USD {amount:,.2f}"][style % 3]


def render(
    variant: str,
    backers: Sequence[Backer],
    *,
    bom: bool = False,
    crlf: bool = False,
) -> bytes:
    """Render a whole backer report of `variant` as bytes."""
    headers = HEADERS[variant]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n" if crlf else "\n")
    writer.writerow(headers)
    for b in backers:
        writer.writerow([_cell(variant, h, b) for h in headers])
    data = out.getvalue().encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def _cell(variant: str, header: str, b: Backer) -> str:
    if header in b.extra:
        return b.extra[header]
    tier = TIERS[b.tier] if b.tier is not None else None
    minimum = tier[2] if tier else 1
    pledge = b.pledge if b.pledge is not None else money(minimum + 10, b.number)
    values = {
        "Backer Id": str(b.number),
        "Backer Number": str(b.number),
        "Backer UID": str(1_000_000_000 + b.number),
        "Backer Name": b.name,
        "Email": b.email,
        "Shipping Country": "US",
        "Shipping Amount": money(10) if tier else "",
        "Reward Title": tier[0] if tier else "",
        "Reward Minimum": money(minimum) if tier else "",
        "Backing Minimum": money(minimum) if tier else "",
        "Reward ID": tier[1] if tier else "",
        "Bonus Support": "$0.00",
        "Pledge Amount": pledge,
        "Pledged At": b.pledged_at,
        "Pledged At (UTC)": b.pledged_at,
        "Rewards Sent?": "",
        "Fulfillment Status": "Unfulfilled",
        "Pledged Status": b.status,
        "Notes": b.notes,
        "[Addon: 1001] Dice Tower": str(b.addons[0]),
        "[Addon: 1002] Sleeves": str(b.addons[1]),
        "Dice Tower": str(b.items[0]),
        "Wooden Insert": str(b.items[1]),
        "ambient one": str(b.items[0]),
        "Survey Response": b.survey_at,
        "Shipping Name": b.name if b.survey_at else "",
        "Shipping Address 1": b.address if b.survey_at else "",
        "Shipping City": "Springfield" if b.survey_at else "",
        "Shipping Country Code": "US" if b.survey_at else "",
        "Shipping Country Name": "United States" if b.survey_at else "",
        "Billing Country": "US",
        "What Is Your Region/Continent?": "North America",
        "Late Pledge": "false",
    }
    return values.get(header, "")


def backers(count: int, *, seed: int = 7, repeat_every: int = 0) -> list[Backer]:
    """`count` valid rows with distinct pledge numbers; every `repeat_every`-th email repeats."""
    rng = random.Random(seed)
    out = []
    for n in range(1, count + 1):
        email_n = n - 1 if repeat_every and n % repeat_every == 0 and n > 1 else n
        out.append(
            Backer(
                number=n,
                email=f"backer{email_n}@example.com",
                name=f"Backer {n}",
                tier=rng.randrange(len(TIERS)),
                survey_at="2021/01/02, 03:04" if n % 2 else "",
                addons=(rng.randrange(3), rng.randrange(2)),
                items=(rng.randrange(2), rng.randrange(3)),
            )
        )
    return out
