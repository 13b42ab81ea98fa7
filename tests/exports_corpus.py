"""Real-shaped exports of every platform and year in platform-formats.md, written by hand.

Each file reproduces what the real exports of its year do (date style, money style, tier ids,
quoting, BOM, line ends, multi-line cells) with fake people, and says what importing it must
store: the detection, each date column's style, and each pledge's fields. The header lists are
the generators' (tests/exports*.py) where one already holds that year's layout.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from pledgeflow_bench import exports
from schemas.kickstarter import report_headers
from tests import exports_backerkit, exports_gamefound, exports_indiegogo

# 2015: the 13 columns of 2014, Billing columns already there, no Reward Title yet.
HEADERS_2015 = report_headers("2015")


def at(text: str) -> datetime:
    """A UTC timestamp written `YYYY-MM-DD HH:MM[:SS]`."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@dataclass(frozen=True)
class Expected:
    """What one pledge must be stored as (None: stored NULL)."""

    email: str
    amount: Decimal | None
    currency: str | None
    status: str | None
    pledged_at: datetime | None
    responded_at: datetime | None = None
    shipping_amount: Decimal | None = None
    # The person's platform id (Backer UID); a per-project number (Backer Id, Service Guid) is none.
    backer_external_id: str | None = None
    # The pledge's reward tier: (platform id, price), or None: the pledge links to no product.
    tier: tuple[str | None, Decimal | None] | None = None


@dataclass(frozen=True)
class CorpusFile:
    """One export as a platform wrote it, and what importing it must store."""

    name: str
    headers: list[str]
    rows: list[dict[str, str]]
    platform: str
    variant: str
    dates: dict[str, str]  # date header -> the style decided for it
    pledges: dict[str, Expected]
    bom: bool = False
    crlf: bool = False
    quote_all: bool = False
    currency: str | None = None  # `--currency`, where the file carries none
    chunk_size: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    def render(self, **overrides: str) -> bytes:
        """The file's bytes; `overrides` replace a column's every non-blank cell."""
        out = io.StringIO()
        writer = csv.writer(
            out,
            quoting=csv.QUOTE_ALL if self.quote_all else csv.QUOTE_MINIMAL,
            lineterminator="\r\n" if self.crlf else "\n",
        )
        writer.writerow(self.headers)
        for row in self.rows:
            cells = {**row, **{h: v for h, v in overrides.items() if row.get(h)}}
            writer.writerow([cells.get(h, "") for h in self.headers])
        data = out.getvalue().encode()
        return b"\xef\xbb\xbf" + data if self.bom else data


def _survey(name: str, street: str, city: str, country: str, code: str) -> dict[str, str]:
    return {
        "Shipping Name": name,
        "Shipping Address 1": street,
        "Shipping City": city,
        "Shipping Country Name": country,
        "Shipping Country Code": code,
    }


KICKSTARTER_2013 = CorpusFile(
    "kickstarter-2013",
    exports.HEADERS["2013"],
    [
        {
            "Backer Id": "301", "Backer Name": "Ann", "Email": "ann@example.com",
            "Shipping Country": "US", "Shipping Amount": "$5.00 USD",
            "Reward Minimum": "$25.00 USD", "Pledge Amount": "$30.00 USD",
            "Pledged At": "2013/05/02, 18:40", "Rewards Sent?": "Sent",
            "Pledged Status": "collected", "Survey Response": "2013/06/14, 09:05",
            **_survey("Ann A", "1 Elm St", "Austin", "United States", "US"),
        },
        {
            "Backer Id": "302", "Backer Name": "Ben", "Email": "ben@example.com",
            "Shipping Country": "CA", "Shipping Amount": "$10.00 USD",
            "Reward Minimum": "$25.00 USD", "Pledge Amount": "$35.00 USD",
            "Pledged At": "2013/05/13, 00:01", "Pledged Status": "collected",
        },
        {
            "Backer Id": "303", "Backer Name": "Cid", "Email": "cid@example.com",
            "Shipping Country": "US", "Shipping Amount": "$0.00 USD",
            "Reward Minimum": "$1.00 USD", "Pledge Amount": "$1.00 USD",
            "Pledged At": "2013/05/31, 23:59", "Pledged Status": "dropped",
        },
    ],
    "kickstarter",
    "2013",
    {"Pledged At": "YYYY/MM/DD, HH:MM", "Survey Response": "YYYY/MM/DD, HH:MM"},
    {
        "301": Expected("ann@example.com", Decimal("30.00"), "USD", "collected",
                        at("2013-05-02 18:40"), at("2013-06-14 09:05"), Decimal("5.00"), None,
                        (None, Decimal("25.00"))),
        "302": Expected("ben@example.com", Decimal("35.00"), "USD", "collected",
                        at("2013-05-13 00:01"), None, Decimal("10.00"), None,
                        (None, Decimal("25.00"))),
        "303": Expected("cid@example.com", Decimal("1.00"), "USD", "dropped",
                        at("2013-05-31 23:59"), None, Decimal("0.00"), None,
                        (None, Decimal("1.00"))),
    },
)  # fmt: skip

# The pastebin row of 2014 (HDa4e9WY), with its 7-digit Reward ID, then two more.
KICKSTARTER_2014 = CorpusFile(
    "kickstarter-2014",
    exports.HEADERS["2014"],
    [
        {
            "Backer Number": "13", "Backer UID": "1647400540", "Backer Name": "name1",
            "Email": "email1@example.com", "Shipping Country": "US",
            "Shipping Amount": "$0.00 USD", "Reward Minimum": "$5.00 USD",
            "Reward ID": "2597818", "Pledge Amount": "$10.00 USD",
            "Pledged At": "2014/04/24, 05:37", "Pledged Status": "collected",
        },
        {
            "Backer Number": "14", "Backer UID": "1647400541", "Backer Name": "name2",
            "Email": "email2@example.com", "Shipping Country": "GB",
            "Shipping Amount": "$8.00 USD", "Reward Minimum": "$25.00 USD",
            "Reward ID": "2597820", "Pledge Amount": "$1,033.00 USD",
            "Pledged At": "2014/04/25, 17:00", "Pledged Status": "collected",
            "Survey Response": "2014/05/30, 12:00",
            **_survey("Name Two", "2 High St", "Leeds", "United Kingdom", "GB"),
        },
        {
            "Backer Number": "16", "Backer UID": "1647400543", "Backer Name": "name3",
            "Email": "email3@example.com", "Shipping Country": "US",
            "Shipping Amount": "$0.00 USD", "Reward Minimum": "$5.00 USD",
            "Reward ID": "2597818", "Pledge Amount": "$5.00 USD",
            "Pledged At": "2014/05/01, 08:09", "Pledged Status": "errored",
        },
    ],
    "kickstarter",
    "2014-2017",
    {"Pledged At": "YYYY/MM/DD, HH:MM", "Survey Response": "YYYY/MM/DD, HH:MM"},
    {
        "13": Expected("email1@example.com", Decimal("10.00"), "USD", "collected",
                       at("2014-04-24 05:37"), None, Decimal("0.00"), "1647400540",
                       ("2597818", Decimal("5.00"))),
        "14": Expected("email2@example.com", Decimal("1033.00"), "USD", "collected",
                       at("2014-04-25 17:00"), at("2014-05-30 12:00"), Decimal("8.00"),
                       "1647400541", ("2597820", Decimal("25.00"))),
        "16": Expected("email3@example.com", Decimal("5.00"), "USD", "errored",
                       at("2014-05-01 08:09"), None, Decimal("0.00"), "1647400543",
                       ("2597818", Decimal("5.00"))),
    },
    crlf=True,
)  # fmt: skip

# The 2015 report that imported nothing: `YYYY-MM-DD, HH:MM` dates, `$… AUD` money, Billing
# columns and no Reward Title; BOM and CRLF as Excel-era files have them.
KICKSTARTER_2015 = CorpusFile(
    "kickstarter-2015",
    HEADERS_2015,
    [
        {
            "Backer Number": "1", "Backer UID": "2094821937", "Backer Name": "Kim",
            "Email": "kim@example.com", "Shipping Country": "AU",
            "Shipping Amount": "$10.00 AUD", "Reward Minimum": "$40.79 AUD",
            "Reward ID": "4139573", "Pledge Amount": "$50.79 AUD",
            "Pledged At": "2015-08-18, 07:23", "Pledged Status": "collected",
            "Billing State/Province": "NSW", "Billing Country": "AU",
            "Survey Response": "2015-09-21, 22:10",
            **_survey("Kim K", "3 Pitt St", "Sydney", "Australia", "AU"),
        },
        {
            "Backer Number": "2", "Backer UID": "2094821938", "Backer Name": "Lee",
            "Email": "lee@example.com", "Shipping Country": "NZ",
            "Shipping Amount": "$15.00 AUD", "Reward Minimum": "$99.00 AUD",
            "Reward ID": "4139574", "Pledge Amount": "$1,114.00 AUD",
            "Pledged At": "2015-08-02, 13:05", "Pledged Status": "collected",
            "Notes": "gift, wrap it", "Billing Country": "NZ",
        },
        {
            "Backer Number": "4", "Backer UID": "2094821940", "Backer Name": "Max",
            "Email": "max@example.com", "Shipping Country": "AU",
            "Shipping Amount": "$10.00 AUD", "Reward Minimum": "$40.79 AUD",
            "Reward ID": "4139573", "Pledge Amount": "$40.79 AUD",
            "Pledged At": "2015-09-01, 00:00", "Pledged Status": "dropped",
            "Billing Country": "AU",
        },
    ],
    "kickstarter",
    "2014-2017",
    {"Pledged At": "YYYY-MM-DD, HH:MM", "Survey Response": "YYYY-MM-DD, HH:MM"},
    {
        "1": Expected("kim@example.com", Decimal("50.79"), "AUD", "collected",
                      at("2015-08-18 07:23"), at("2015-09-21 22:10"), Decimal("10.00"),
                      "2094821937", ("4139573", Decimal("40.79"))),
        "2": Expected("lee@example.com", Decimal("1114.00"), "AUD", "collected",
                      at("2015-08-02 13:05"), None, Decimal("15.00"), "2094821938",
                      ("4139574", Decimal("99.00"))),
        "4": Expected("max@example.com", Decimal("40.79"), "AUD", "dropped",
                      at("2015-09-01 00:00"), None, Decimal("10.00"), "2094821940",
                      ("4139573", Decimal("40.79"))),
    },
    bom=True,
    crlf=True,
)  # fmt: skip

# The same year with seconds, offsets and zone names, as re-exports and sync tools write it.
KICKSTARTER_2015_ZONES = CorpusFile(
    "kickstarter-2015-zones",
    HEADERS_2015,
    [
        {**KICKSTARTER_2015.rows[0], "Pledged At": "2015-08-18, 07:23:05 PDT",
         "Survey Response": "2015-09-21, 22:10:00 -0700"},
        {**KICKSTARTER_2015.rows[1], "Pledged At": "2015-08-02, 13:05:00 UTC"},
        {**KICKSTARTER_2015.rows[2], "Pledged At": "2015-09-01, 00:00:59 Australia/Sydney"},
    ],
    "kickstarter",
    "2014-2017",
    {"Pledged At": "YYYY-MM-DD, HH:MM:SS [zone]", "Survey Response": "YYYY-MM-DD, HH:MM:SS ±HHMM"},
    {
        "1": Expected("kim@example.com", Decimal("50.79"), "AUD", "collected",
                      at("2015-08-18 14:23:05"), at("2015-09-22 05:10"), Decimal("10.00"),
                      "2094821937", ("4139573", Decimal("40.79"))),
        "2": Expected("lee@example.com", Decimal("1114.00"), "AUD", "collected",
                      at("2015-08-02 13:05"), None, Decimal("15.00"), "2094821938",
                      ("4139574", Decimal("99.00"))),
        "4": Expected("max@example.com", Decimal("40.79"), "AUD", "dropped",
                      at("2015-08-31 14:00:59"), None, Decimal("10.00"), "2094821940",
                      ("4139573", Decimal("40.79"))),
    },
)  # fmt: skip

# 2018, Swedish kronor (helmgast/lore): ISO prefix, thousands comma, multi-line notes.
KICKSTARTER_2018 = CorpusFile(
    "kickstarter-2018-sek",
    exports.HEADERS["2017"],
    [
        {
            "Backer Number": "7", "Backer UID": "387442211", "Backer Name": "Olle",
            "Email": "olle@example.com", "Shipping Country": "SE",
            "Shipping Amount": "SEK 100.00", "Reward Title": "Kopparboken",
            "Reward Minimum": "SEK 650.00", "Reward ID": "6513217",
            "Pledge Amount": "SEK 1,000.00", "Pledged At": "2018/03/28, 10:27",
            "Pledged Status": "collected", "Billing Country": "SE",
            "Survey Response": "2018/04/14, 16:45",
            **_survey("Olle O", "Storgatan 1", "Göteborg", "Sweden", "SE"),
            "Shipping Delivery Notes": "Ring twice,\nthen leave it\r\nby the door",
        },
        {
            "Backer Number": "8", "Backer UID": "387442212", "Backer Name": "Siv",
            "Email": "Siv@Example.com ", "Shipping Country": "NO",
            "Shipping Amount": "SEK 150.00", "Reward Title": "Digital",
            "Reward Minimum": "SEK 100.00", "Reward ID": "6513218",
            "Pledge Amount": "SEK 250.00", "Pledged At": "2018/03/29, 01:02",
            "Pledged Status": "collected", "Billing Country": "NO",
        },
    ],
    "kickstarter",
    "2017-2019",
    {"Pledged At": "YYYY/MM/DD, HH:MM", "Survey Response": "YYYY/MM/DD, HH:MM"},
    {
        "7": Expected("olle@example.com", Decimal("1000.00"), "SEK", "collected",
                      at("2018-03-28 10:27"), at("2018-04-14 16:45"), Decimal("100.00"),
                      "387442211", ("6513217", Decimal("650.00"))),
        "8": Expected("siv@example.com", Decimal("250.00"), "SEK", "collected",
                      at("2018-03-29 01:02"), None, Decimal("150.00"), "387442212",
                      ("6513218", Decimal("100.00"))),
    },
)  # fmt: skip

# The 10-column no-reward file of the same years, bare `$` amounts (one decimal, as seen).
KICKSTARTER_NO_REWARD = CorpusFile(
    "kickstarter-no-reward",
    exports.HEADERS["no-reward"],
    [
        {
            "Backer Number": "3", "Backer UID": "2094821939", "Backer Name": "Nia",
            "Email": "nia@example.com", "Pledge Amount": "$98.9",
            "Pledged At": "2015-08-19, 11:11", "Pledged Status": "collected",
            "Billing Country": "AU",
        },
        {
            "Backer Number": "5", "Backer UID": "2094821941", "Backer Name": "Oz",
            "Email": "oz@example.com", "Pledge Amount": "$1",
            "Pledged At": "2015-08-20, 12:00", "Pledged Status": "collected",
            "Billing State/Province": "VIC", "Billing Country": "AU",
        },
    ],
    "kickstarter",
    "2014-2019 no-reward",
    {"Pledged At": "YYYY-MM-DD, HH:MM"},
    {
        "3": Expected("nia@example.com", Decimal("98.90"), "AUD", "collected",
                      at("2015-08-19 11:11"), backer_external_id="2094821939"),
        "5": Expected("oz@example.com", Decimal("1.00"), "AUD", "collected",
                      at("2015-08-20 12:00"), backer_external_id="2094821941"),
    },
    currency="AUD",
)  # fmt: skip

# 2023 (elephantlaboratories): Backing Minimum, Bonus Support, Fulfillment Status, add-ons.
KICKSTARTER_2023 = CorpusFile(
    "kickstarter-2023",
    exports.HEADERS["2020"],
    [
        {
            "Backer Number": "1201", "Backer UID": "1930051122", "Backer Name": "Pat",
            "Email": "pat@example.com", "Shipping Country": "US", "Shipping Amount": "$12.00",
            "Reward Title": "Sol: Last Days of a Star", "Backing Minimum": "$59.00",
            "Reward ID": "9311077", "Bonus Support": "$5.00", "Pledge Amount": "$96.00",
            "Pledged At": "2023/12/05, 14:03", "Fulfillment Status": "Unfulfilled",
            "Pledged Status": "collected", "[Addon: 1001] Dice Tower": "1",
            "[Addon: 1002] Sleeves": "2", "Dice Tower": "0", "Wooden Insert": "1",
            "Survey Response": "2024/01/09, 08:30",
            **_survey("Pat P", "9 Oak Ave", "Denver", "United States", "US"),
        },
        {
            "Backer Number": "1202", "Backer UID": "1930051123", "Backer Name": "Quinn",
            "Email": "quinn@example.com", "Shipping Country": "DE", "Shipping Amount": "$25.00",
            "Reward Title": "Sol: Last Days of a Star", "Backing Minimum": "$59.00",
            "Reward ID": "9311077", "Bonus Support": "$0.00", "Pledge Amount": "$84.00",
            "Pledged At": "2023/12/13, 23:59", "Fulfillment Status": "Unfulfilled",
            "Pledged Status": "collected", "[Addon: 1001] Dice Tower": "0",
            "[Addon: 1002] Sleeves": "0", "Dice Tower": "0", "Wooden Insert": "0",
        },
    ],
    "kickstarter",
    "2020+",
    {"Pledged At": "YYYY/MM/DD, HH:MM", "Survey Response": "YYYY/MM/DD, HH:MM"},
    {
        "1201": Expected("pat@example.com", Decimal("96.00"), "USD", "collected",
                         at("2023-12-05 14:03"), at("2024-01-09 08:30"), Decimal("12.00"),
                         "1930051122", ("9311077", Decimal("59.00"))),
        "1202": Expected("quinn@example.com", Decimal("84.00"), "USD", "collected",
                         at("2023-12-13 23:59"), None, Decimal("25.00"), "1930051123",
                         ("9311077", Decimal("59.00"))),
    },
    crlf=True,
)  # fmt: skip

# 2025 (troglodisme/kickstarter-fulfillment): `Pledged At (UTC)`, pounds, late pledges.
KICKSTARTER_2025 = CorpusFile(
    "kickstarter-2025",
    exports.HEADERS["2024"],
    [
        {
            "Backer Number": "88", "Backer UID": "2011223344", "Backer Name": "Rae",
            "Email": "rae@privaterelay.appleid.com", "Shipping Country": "GB",
            "Shipping Amount": "£20.00", "Reward Title": "ambient one",
            "Backing Minimum": "£233.00", "Reward ID": "10450001", "Bonus Support": "£0.00",
            "Pledge Amount": "£253.00", "Pledged At (UTC)": "2025-02-14 19:45:12",
            "Fulfillment Status": "Unfulfilled", "Pledged Status": "collected",
            "Late Pledge": "true", "Pledge Over Time": "false", "ambient one": "1",
            "Survey Response": "2025-03-01 10:00:00",
            **_survey("Rae R", "4 Mill Ln", "Bristol", "United Kingdom", "GB"),
        },
        {
            "Backer Number": "89", "Backer UID": "2011223345", "Backer Name": "Sam",
            "Email": "sam@example.com", "Shipping Country": "IE",
            "Shipping Amount": "£25.00", "Reward Title": "ambient one",
            "Backing Minimum": "£233.00", "Reward ID": "10450001", "Bonus Support": "£2.00",
            "Pledge Amount": "£260.00", "Pledged At (UTC)": "2025-02-01 07:00:00",
            "Fulfillment Status": "Unfulfilled", "Pledged Status": "dropped",
            "Late Pledge": "false", "Pledge Over Time": "true", "ambient one": "1",
        },
    ],
    "kickstarter",
    "2024+",
    {"Pledged At (UTC)": "YYYY-MM-DD HH:MM:SS", "Survey Response": "YYYY-MM-DD HH:MM:SS"},
    {
        "88": Expected("rae@privaterelay.appleid.com", Decimal("253.00"), "GBP", "collected",
                       at("2025-02-14 19:45:12"), at("2025-03-01 10:00"), Decimal("20.00"),
                       "2011223344", ("10450001", Decimal("233.00"))),
        "89": Expected("sam@example.com", Decimal("260.00"), "GBP", "dropped",
                       at("2025-02-01 07:00"), None, Decimal("25.00"), "2011223345",
                       ("10450001", Decimal("233.00"))),
    },
    bom=True,
)  # fmt: skip


def _indiegogo(order: int, pledge: int, date: str, amount: str, **cells: str) -> dict[str, str]:
    return {
        "Order No.": str(order), "Pledge ID": str(pledge), "Fulfillment Status": "Unfulfilled",
        "Funding Date": date, "Payment Method": "credit_card", "Appearance": "Public",
        "Amount": amount, "Shipping Fees": "$5.00", "Perk ID": "5519", "Perk": "Early Bird",
        **cells,
    }  # fmt: skip


# Indiegogo contributions (functionland's 45 columns), re-saved by Excel in a day-first locale:
# only the last chunk shows a day above 12, and every chunk must read the file's order.
INDIEGOGO = CorpusFile(
    "indiegogo-excel-day-first",
    exports_indiegogo.HEADERS,
    [
        _indiegogo(9001, 77001, "01/03/2016 14:22", "$1,250.00", Name="Uma",
                   Email="uma@example.com", **{"Item Name": "Mug", "Item SKU": "MG"}),
        _indiegogo(9002, 77002, "02/03/2016 08:00", "$35.00", Name="Vic",
                   Email="vic@example.com"),
        _indiegogo(9003, 77003, "14/03/2016 23:10", "$35.00", Name="Wes",
                   Email="wes@example.com"),
    ],
    "indiegogo",
    "contributions, 4 item groups",
    {"Funding Date": "DD/MM/YYYY HH:MM"},
    {
        "77001": Expected("uma@example.com", Decimal("1250.00"), "USD", "unfulfilled",
                          at("2016-03-01 14:22"), shipping_amount=Decimal("5.00"),
                          tier=("5519", None)),
        "77002": Expected("vic@example.com", Decimal("35.00"), "USD", "unfulfilled",
                          at("2016-03-02 08:00"), shipping_amount=Decimal("5.00"),
                          tier=("5519", None)),
        "77003": Expected("wes@example.com", Decimal("35.00"), "USD", "unfulfilled",
                          at("2016-03-14 23:10"), shipping_amount=Decimal("5.00"),
                          tier=("5519", None)),
    },
    crlf=True,
)  # fmt: skip


def _backerkit(
    n: int, email: str, reward: str, amount: str, pledged: str, **cells: str
) -> dict[str, str]:
    price, description = {
        "7310": ("249.0", "RollR 60 | Launch Special - two rollers"),
        "7311": ("999.0", "BikR Kit | Four Pack - four kits"),
    }[reward]
    return {
        "Id": str(n), "Service Guid": str(n + 100), "Platform": "kickstarter",
        "Reward Id": reward, "Name": f"Backer {n}", "Email": email,
        "Address Name": f"Backer {n}", "Address Line 1": "1 Main St", "Address City": "Reno",
        "Address State": "NV", "Address Country": "US", "Address Postal Code": "89501",
        "Pledge Amount": amount, "Pledge Status": "collected", "Pledged At": pledged,
        "Full Address": f"Backer {n}\n1 Main St\nReno, NV 89501\nUnited States of America",
        "Full Country": "United States of America", "Reward Price": price,
        "Reward Description": description, "Order Placed": "09/29/17",
        "Order Status": "locked_down", "Order Charged": "09/29/17",
        "Funds Added in BackerKit": "0.0", "Add-on Shipping Subtotal": "0.0",
        "Pledge Level Shipping Subtotal": "10.0", "Total Spent": amount, **cells,
    }  # fmt: skip


# BackerKit 2017 (knndylx/BackerKitFormatter): every field quoted, BOM, CRLF, offsets, plain
# decimals, a multi-line Full Address, MM/DD/YY order dates kept as answers.
BACKERKIT = CorpusFile(
    "backerkit-2017",
    exports_backerkit.HEADERS,
    [
        _backerkit(1, "tester+domestic@example.com", "7310", "249.0",
                   "2017-08-15 07:15:44 -0700", Platform="Manual", Name="Test Backer",
                   **{"Survey Answered At": "2017-08-20 10:00:00 -0700"}),
        _backerkit(2, "yan@example.com", "7311", "1249.5", "2017-08-16 23:30:00 -0700",
                   **{"Pledge Status": "failed", "Funds Added in BackerKit": "250.5"}),
    ],
    "backerkit",
    "2017 backer export, 4 SKU columns",
    {"Pledged At": "YYYY-MM-DD HH:MM:SS ±HHMM", "Survey Answered At": "YYYY-MM-DD HH:MM:SS ±HHMM"},
    {
        "1": Expected("tester+domestic@example.com", Decimal("249.00"), "USD", "collected",
                      at("2017-08-15 14:15:44"), at("2017-08-20 17:00"), Decimal("10.00"),
                      None, ("7310", Decimal("249.00"))),
        "2": Expected("yan@example.com", Decimal("1249.50"), "USD", "failed",
                      at("2017-08-17 06:30"), None, Decimal("10.00"), None,
                      ("7311", Decimal("999.00"))),
    },
    bom=True,
    crlf=True,
    quote_all=True,
    currency="USD",
)  # fmt: skip

# Gamefound's pledge-import template (help.gamefound.com): no dates, currency in the amount.
GAMEFOUND = CorpusFile(
    "gamefound-template",
    exports_gamefound.WITH_NUMBER,
    [
        {"Backer number": "1", "Backer name": "Zoe", "E-mail": "zoe@example.com",
         "Reward title": "Core", "Bonus support": "€5.00", "Pledge amount": "€64.00"},
        {"Backer number": "2", "Backer name": "Abe", "E-mail": "abe@example.com",
         "Reward title": "All-in", "Bonus support": "", "Pledge amount": "1.234,50 EUR"},
    ],
    "gamefound",
    "pledge import template",
    {},
    {
        "1": Expected("zoe@example.com", Decimal("64.00"), "EUR", None, None,
                      tier=(None, None)),
        "2": Expected("abe@example.com", Decimal("1234.50"), "EUR", None, None,
                      tier=(None, None)),
    },
)  # fmt: skip

CORPUS = [
    KICKSTARTER_2013,
    KICKSTARTER_2014,
    KICKSTARTER_2015,
    KICKSTARTER_2015_ZONES,
    KICKSTARTER_2018,
    KICKSTARTER_NO_REWARD,
    KICKSTARTER_2023,
    KICKSTARTER_2025,
    INDIEGOGO,
    BACKERKIT,
    GAMEFOUND,
]
