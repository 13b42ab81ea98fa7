"""Real-shaped exports of every platform and year in platform-formats.md, written by hand.

Each file reproduces what the real exports of its year do (date style, money style, tier ids,
quoting, BOM, line ends, multi-line cells) with fake people, and says what importing it must
store: the detection, each date column's style, and each pledge's fields. The files are data,
in `exports_corpus.json` (`about` says where each comes from); their header rows are the
platforms' (schemas.kickstarter) and the generators' (tests/exports_*.py), named in `headers`.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from pledgeflow_bench import exports
from schemas.kickstarter import report_headers
from tests import exports_backerkit, exports_gamefound, exports_indiegogo

HEADERS: dict[str, list[str]] = {
    **{f"kickstarter {year}": headers for year, headers in exports.HEADERS.items()},
    "kickstarter 2015": report_headers("2015"),
    "indiegogo": exports_indiegogo.HEADERS,
    "backerkit": exports_backerkit.HEADERS,
    "gamefound": exports_gamefound.WITH_NUMBER,
}


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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Expected:
        """A pledge as the corpus writes it: money and times as text, absent keys None."""

        def money(key: str) -> Decimal | None:
            return None if data.get(key) is None else Decimal(data[key])

        def time(key: str) -> datetime | None:
            return None if data.get(key) is None else at(data[key])

        tier = data.get("tier")
        return cls(
            data["email"],
            money("amount"),
            data["currency"],
            data["status"],
            time("pledged_at"),
            time("responded_at"),
            money("shipping_amount"),
            data.get("backer_external_id"),
            None if tier is None else (tier[0], None if tier[1] is None else Decimal(tier[1])),
        )


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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CorpusFile:
        """One file of `exports_corpus.json`."""
        return cls(
            data["name"],
            HEADERS[data["headers"]],
            data["rows"],
            data["platform"],
            data["variant"],
            data["dates"],
            {key: Expected.from_json(pledge) for key, pledge in data["pledges"].items()},
            bom=data.get("bom", False),
            crlf=data.get("crlf", False),
            quote_all=data.get("quote_all", False),
            currency=data.get("currency"),
            chunk_size=data.get("chunk_size", 2),
        )

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


CORPUS = [
    CorpusFile.from_json(data)
    for data in json.loads(Path(__file__).with_suffix(".json").read_text("utf-8"))["files"]
]
BY_NAME = {corpus.name: corpus for corpus in CORPUS}
# The 2015 report that imported nothing (AUD, `YYYY-MM-DD, HH:MM`), and Indiegogo's day-first file.
KICKSTARTER_2015 = BY_NAME["kickstarter-2015"]
INDIEGOGO = BY_NAME["indiegogo-excel-day-first"]
