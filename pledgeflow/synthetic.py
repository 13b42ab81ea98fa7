"""Synthetic Kickstarter 2020+ backer reports, written to disk as a stream, for benchmarks.

The file looks like a real campaign's export: 50 reward tiers, four `[Addon: id] name` columns
and three item columns (one sharing an add-on's name), survey and shipping columns for the
backers who answered, about 5% of rows from a backer who pledged before (same email, name and
Backer UID, often with different case or spacing around the email), mixed money formats, a few
dropped, errored and refunded pledges, and a small share of rows the importer must reject
(blank email, a money or date cell that does not parse, a negative quantity).
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ADDONS = (
    (2001, "Dice Tower", 25),
    (2002, "Sleeves", 9),
    (2003, "Playmat", 29),
    (2004, "Coins", 35),
)
ITEMS = ("Dice Tower", "Wooden Insert", "Art Book")
HEADERS = (
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
    *(f"[Addon: {addon_id}] {name}" for addon_id, name, _ in ADDONS),
    *ITEMS,
    "Survey Response",
    "Shipping Name",
    "Shipping Address 1",
    "Shipping Address 2",
    "Shipping City",
    "Shipping State",
    "Shipping Postal Code",
    "Shipping Country Name",
    "Shipping Country Code",
    "Shipping Phone Number",
    "Shipping Delivery Notes",
    "What Is Your T-Shirt Size?",
)
TIER_NAMES = ("Base Game", "Deluxe", "Collector", "Retailer", "All In")
TIERS = tuple(
    (f"{TIER_NAMES[n % 5]} {n // 5 + 1}" if n >= 5 else TIER_NAMES[n], str(7000 + n), 19 + 10 * n)
    for n in range(50)
)
FIRST = ("Ada", "Ben", "Chloé", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivan", "Jo", "Kenji")
LAST = ("Ng", "Okafor", "Smith", "García", "Müller", "Rossi", "Kowalski", "Tanaka", "Dubois")
COUNTRIES = (
    ("US", "United States", "CA", "Springfield"),
    ("GB", "United Kingdom", "", "London"),
    ("DE", "Germany", "", "Berlin"),
    ("CA", "Canada", "ON", "Toronto"),
    ("AU", "Australia", "NSW", "Sydney"),
    ("FR", "France", "", "Lyon"),
)
STATUSES = ("collected",) * 94 + ("dropped",) * 3 + ("errored",) * 2 + ("refunded",)
SIZES = ("S", "M", "L", "XL", "")
START = datetime(2020, 4, 24, 5, 37)


@dataclass
class ExportSummary:
    """What a generated file holds."""

    path: Path
    rows: int
    bad_rows: int
    repeated_emails: int
    size_bytes: int


def money(amount: int, style: int) -> str:
    """Render whole dollars as Kickstarter did across the years."""
    return (f"${amount:,}.00 USD", f"${amount:,}.00", f"USD {amount:,}.00")[style % 3]


def _returning(number: int, share: float) -> bool:
    """Whether row `number` is a backer pledging again: a fixed hash of the row number, so any
    earlier row's role can be recomputed without keeping a list of backers."""
    return number > 1 and (number * 2_654_435_761) % 2**32 < share * 2**32


def _backer(number: int) -> tuple[str, str, str, str, int]:
    """(email, name, uid, phone, country index) of the backer first seen at row `number`."""
    first, last = FIRST[number * 7 % len(FIRST)], LAST[number * 13 % len(LAST)]
    email = f"{first}.{last}{number}@example.com".lower()
    phone = f"+1 555 {number % 10_000:04d}" if number % 3 == 0 else ""
    return email, f"{first} {last}", str(1_000_000_000 + number), phone, number % len(COUNTRIES)


def write_kickstarter_export(
    path: Path,
    rows: int,
    *,
    seed: int = 2020,
    repeat_share: float = 0.05,
    bad_share: float = 0.002,
) -> ExportSummary:
    """Write `rows` data rows to `path`, one at a time; memory stays flat whatever the size."""
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
    repeated = bad = 0
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADERS)
        for number in range(1, rows + 1):
            if _returning(number, repeat_share):
                first_seen = rng.randrange(1, number)
                while _returning(first_seen, repeat_share):
                    first_seen = rng.randrange(1, number)
                email, name, uid, phone, country = _backer(first_seen)
                email = rng.choice((email, email.upper(), f" {email} "))
                repeated += 1
            else:
                email, name, uid, phone, country = _backer(number)
            code, country_name, state, city = COUNTRIES[country]
            title, reward_id, minimum = TIERS[min(int(rng.expovariate(1 / 9)), 49)]
            addons = [rng.choice((0, 0, 0, 1, 1, 2)) for _ in ADDONS]
            items = [rng.choice((0, 0, 1, 2)) for _ in ITEMS]
            bonus = rng.choice((0, 0, 0, 5, 10))
            total = minimum + bonus + sum(q * a[2] for q, a in zip(addons, ADDONS, strict=True))
            answered = rng.random() < 0.7
            pledged = START + timedelta(minutes=number % 43_200, seconds=rng.randrange(60))
            row = [
                str(number),
                uid,
                name,
                email,
                code,
                money(10 if code == "US" else 20, number),
                title,
                money(minimum, number + 1),
                reward_id,
                f"${bonus}.00",
                money(total, number + 2),
                pledged.strftime("%Y/%m/%d, %H:%M"),
                "Unfulfilled",
                rng.choice(STATUSES),
                "gift wrap, please" if number % 97 == 0 else "",
                *map(str, addons),
                *map(str, items),
                (pledged + timedelta(days=200)).strftime("%Y/%m/%d, %H:%M") if answered else "",
                name if answered else "",
                f"{number % 900 + 1} Main St" if answered else "",
                "Apt 4" if answered and number % 5 == 0 else "",
                city if answered else "",
                state if answered else "",
                f"{10000 + number % 89999}" if answered else "",
                country_name if answered else "",
                code if answered else "",
                phone,
                "leave at door" if answered and number % 50 == 0 else "",
                rng.choice(SIZES) if answered else "",
            ]
            if rng.random() < bad_share:
                bad += 1
                spoil = rng.randrange(4)
                if spoil == 0:
                    row[3] = ""  # missing_email
                elif spoil == 1:
                    row[10] = "about ten dollars"  # invalid_money
                elif spoil == 2:
                    row[11] = "last tuesday"  # invalid_date
                else:
                    row[15] = "-1"  # invalid_quantity
            writer.writerow(row)
    return ExportSummary(path, rows, bad, repeated, path.stat().st_size)
