"""Synthetic Kickstarter backer reports, the one generator of the tests and the benchmark.

Two ways to make one, from the same headers and money formats:
- `backers` and `render`: a small report of any variant, row by row as a test describes it
  (`Backer`), with fake people and messy values;
- `write_kickstarter_export`: a 2020+ report of any size written to disk as a stream, which looks
  like a real campaign's export: 50 reward tiers, four `[Addon: id] name` columns and three item
  columns (one sharing an add-on's name), survey and shipping columns for the backers who
  answered, about 5% of rows from a backer who pledged before (same email, name and Backer UID,
  often with different case or spacing around the email), mixed money formats, a few dropped,
  errored and refunded pledges, and a small share of rows the importer must reject (blank email,
  a money or date cell that does not parse, a negative quantity).
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from schemas.kickstarter import report_headers

# The header row of each variant's report, as the tests render it.
HEADERS: dict[str, list[str]] = {
    "2013": report_headers("2013"),
    "2014": report_headers("2014"),
    "2017": report_headers("2017", questions=["What Is Your Region/Continent?"]),
    "2020": report_headers(
        "2020", [(1001, "Dice Tower"), (1002, "Sleeves")], ["Dice Tower", "Wooden Insert"]
    ),
    "2024": report_headers(
        "2024",
        [(1001, "Dice Tower")],
        ["ambient one"],
        ["ambient one colour: Which colour do you want?"],
    ),
    "no-reward": report_headers("no-reward"),
}
VARIANT_NAMES = {
    "2013": "2013",
    "2014": "2014-2017",
    "2017": "2017-2019",
    "2020": "2020+",
    "2024": "2024+",
    "no-reward": "2014-2019 no-reward",
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
    """Render an amount as Kickstarter did across the years."""
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
    rng = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
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


# A report of any size, streamed to disk (the benchmark's and the fault tests' files).

ADDONS = (
    (2001, "Dice Tower", 25),
    (2002, "Sleeves", 9),
    (2003, "Playmat", 29),
    (2004, "Coins", 35),
)
# Real item names carry colons (`Gloomhaven: Jaws of the Lion`): the importer decides items by
# their values, never by punctuation.
ITEMS = ("Dice Tower", "Wooden Insert", "Art Book: Frost & Fire")
STREAM_HEADERS = report_headers(
    "2020",
    [(addon_id, name) for addon_id, name, _ in ADDONS],
    ITEMS,
    ["What Is Your T-Shirt Size?"],
)
TIER_NAMES = ("Base Game", "Deluxe", "Collector", "Retailer", "All In")
STREAM_TIERS = tuple(
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
STREAM_START = datetime(2020, 4, 24, 5, 37)


@dataclass
class ExportSummary:
    """What a generated file holds."""

    path: Path
    rows: int
    bad_rows: int
    repeated_emails: int
    size_bytes: int
    # What the file holds for an importer to store: products (reward tiers of importable rows,
    # add-ons and items, one per name) and inventory lines (goods above zero per pledge).
    products: int = 0
    inventory_lines: int = 0


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
    repeated = bad = lines = 0
    titles: set[str] = set()
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(STREAM_HEADERS)
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
            title, reward_id, minimum = STREAM_TIERS[min(int(rng.expovariate(1 / 9)), 49)]
            addons = [rng.choice((0, 0, 0, 1, 1, 2)) for _ in ADDONS]
            items = [rng.choice((0, 0, 1, 2)) for _ in ITEMS]
            bonus = rng.choice((0, 0, 0, 5, 10))
            total = minimum + bonus + sum(q * a[2] for q, a in zip(addons, ADDONS, strict=True))
            answered = rng.random() < 0.7
            pledged = STREAM_START + timedelta(minutes=number % 43_200, seconds=rng.randrange(60))
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
            else:
                titles.add(title)
                owed = dict(zip((a[1] for a in ADDONS), addons, strict=True))
                for name, quantity in zip(ITEMS, items, strict=True):
                    owed[name] = max(owed.get(name, 0), quantity)
                lines += sum(1 for quantity in owed.values() if quantity > 0)
            writer.writerow(row)
    products = len(titles | {a[1] for a in ADDONS} | set(ITEMS))
    return ExportSummary(path, rows, bad, repeated, path.stat().st_size, products, lines)
