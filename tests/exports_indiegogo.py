"""Generate Indiegogo contributions CSVs (45 columns, four repeated item groups), fake people."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

ITEM_GROUP = ["Item Name", "Item SKU", "Option 1", "Option 2", "Option 3"]
HEADERS = [
    "Order No.",
    "Pledge ID",
    "Referrer ID",
    "Fulfillment Status",
    "Funding Date",
    "Payment Method",
    "Appearance",
    "Name",
    "Email",
    "Amount",
    "Shipping Fees",
    "Platform Fee",
    "Transaction Fee",
    "Perk ID",
    "Perk",
    "Shipping Name",
    "Shipping Phone Number",
    "Shipping Address",
    "Shipping Address 2",
    "Shipping City",
    "Shipping State/Province",
    "Shipping Zip/Postal Code",
    "Shipping Country",
    "Carrier",
    "Tracking Number",
    *ITEM_GROUP * 4,
]
PERKS = {"early": ("101", "Early Bird"), "deluxe": ("102", "Deluxe")}
SKUS = {"T-Shirt": "TS", "Sticker": "ST", "Poster": "PO", "Mug": "MG"}


@dataclass
class Contribution:
    """One contribution row; `perk` None is a donation without a perk."""

    pledge_id: int
    email: str
    name: str
    perk: str | None = "early"
    amount: str = "$25.00"
    shipping: str = "$5.00"
    status: str = "Unfulfilled"
    funding_date: str = "2016-03-01 14:22:05"
    items: list[str] = field(default_factory=list)  # up to four item names
    extra: dict[str, str] = field(default_factory=dict)  # header -> cell override


def render(rows: Sequence[Contribution], *, bom: bool = False) -> bytes:
    """Render a whole contributions file as bytes."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADERS)
    for row in rows:
        writer.writerow(cells(row))
    data = out.getvalue().encode()
    return (b"\xef\xbb\xbf" + data) if bom else data


def cells(c: Contribution) -> list[str]:
    """The 45 cells of one contribution, positionally."""
    perk_id, perk = PERKS[c.perk] if c.perk else ("", "")
    ships = bool(c.perk)
    values = {
        "Order No.": f"ORD-{c.pledge_id}",
        "Pledge ID": str(c.pledge_id),
        "Referrer ID": "",
        "Fulfillment Status": c.status,
        "Funding Date": c.funding_date,
        "Payment Method": "Credit Card",
        "Appearance": "Public",
        "Name": c.name,
        "Email": c.email,
        "Amount": c.amount,
        "Shipping Fees": c.shipping if ships else "$0.00",
        "Platform Fee": "$1.25",
        "Transaction Fee": "$0.75",
        "Perk ID": perk_id,
        "Perk": perk,
        "Shipping Name": c.name if ships else "",
        "Shipping Phone Number": "555-0100" if ships else "",
        "Shipping Address": "1 Main St" if ships else "",
        "Shipping Address 2": "",
        "Shipping City": "Springfield" if ships else "",
        "Shipping State/Province": "IL" if ships else "",
        "Shipping Zip/Postal Code": "62701" if ships else "",
        "Shipping Country": "United States" if ships else "",
        "Carrier": "",
        "Tracking Number": "",
    }
    row = [c.extra.get(h, values.get(h, "")) for h in HEADERS[:25]]
    for group in range(4):
        name = c.items[group] if group < len(c.items) else ""
        row += [name, SKUS.get(name, ""), "M" if name == "T-Shirt" else "", "", ""]
    return row


def sample() -> list[Contribution]:
    """Twelve contributions: two backers give twice, three donations have no perk, one
    amount is in pounds, row 5 has a bad amount and row 9 a blank email."""
    return [
        Contribution(1001, "ann@example.com", "Ann", "early", "$25.00", items=["T-Shirt"]),
        Contribution(
            1002,
            "ben@example.com",
            "Ben",
            "deluxe",
            "$60.00",
            items=["T-Shirt", "Sticker", "Poster"],
        ),
        Contribution(1003, "cat@example.com", "Cat", None, "$10.00"),
        Contribution(
            1004,
            "ANN@example.com ",
            "Ann",
            "deluxe",
            "$60.00",
            items=["T-Shirt", "T-Shirt", "Sticker"],
        ),
        Contribution(1005, "dan@example.com", "Dan", "early", "twelve dollars"),
        Contribution(1006, "eve@example.com", "Eve", None, "$5.00"),
        Contribution(1007, "fay@example.com", "Fay", "deluxe", "$1,060.00", items=["Poster"] * 4),
        Contribution(1008, "gus@example.com", "Gus", "early", "$25.00", items=["Sticker"]),
        Contribution(1009, "", "Nobody", "early", "$25.00"),
        Contribution(1010, "ben@example.com", "Ben B.", "early", "$25.00", items=["Mug"]),
        Contribution(1011, "hal@example.com", "Hal", "deluxe", "£45.00", items=["T-Shirt"]),
        Contribution(1012, "ivy@example.com", "Ivy", None, "$15.00", funding_date="03/02/2016"),
    ]
