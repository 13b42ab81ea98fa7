"""Generate Gamefound-style pledge files (the pledge-import template's columns), fake people."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass

WITH_NUMBER = [
    "Backer number",
    "Backer name",
    "E-mail",
    "Reward title",
    "Bonus support",
    "Pledge amount",
]
# The Indiegogo-hosted copy of the template spells the email column `Email`.
WITHOUT_NUMBER = ["Backer name", "Email", "Reward title", "Bonus support", "Pledge amount"]


@dataclass
class Pledge:
    """One template row; `number` None leaves the Backer number cell blank."""

    number: int | None
    name: str
    email: str
    reward: str = "Core"
    bonus: str = ""
    amount: str = "€64.00"


def render(rows: Sequence[Pledge], headers: Sequence[str] = WITH_NUMBER) -> bytes:
    """Render a file with `headers` (the template with or without `Backer number`)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for p in rows:
        values = {
            "Backer number": "" if p.number is None else str(p.number),
            "Backer name": p.name,
            "E-mail": p.email,
            "Email": p.email,
            "Reward title": p.reward,
            "Bonus support": p.bonus,
            "Pledge amount": p.amount,
        }
        writer.writerow([values[h] for h in headers])
    return out.getvalue().encode()


def sample_numbered() -> list[Pledge]:
    """Six rows: row 3 has no backer number, row 5 no email; amounts in euros, written three
    ways."""
    return [
        Pledge(1, "Alice", "alice@example.com", "Core", "€5.00", "€64.00"),
        Pledge(2, "Bob", "bob@example.com", "Deluxe", "", "€99.00"),
        Pledge(None, "Carol", "carol@example.com", "Core", "", "€59.00"),
        Pledge(4, "Dan", "dan@example.com", "Core", "", "59.00 EUR"),
        Pledge(5, "Eve", "", "Core", "", "€59.00"),
        Pledge(6, "Fay", "fay@example.com", "Core", "", "€59,00"),
    ]


def sample_by_email() -> list[Pledge]:
    """Four rows keyed by email: row 3 has no email, row 4 repeats row 2's email (in other
    case) and wins."""
    return [
        Pledge(None, "Alice", "alice@example.com", "Core", "", "€64.00"),
        Pledge(None, "Bob", "BOB@example.com", "Deluxe", "", "€99.00"),
        Pledge(None, "Carol", "", "Core", "", "€59.00"),
        Pledge(None, "Bob", "bob@example.com", "Core", "€6.00", "€70.00"),
    ]
