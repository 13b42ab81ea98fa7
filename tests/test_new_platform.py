"""A platform is data: a made-up platform, given as a layout alone, is detected by its signature
and its file imported into PostgreSQL like any other platform's."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from schemas import platforms
from schemas.layout import EMAIL, PLEDGE_KEY
from schemas.platform_layout import PlatformLayout, Signature, Variant
from tests.helpers import import_path, outcome, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")

# Crowdmint does not exist: its export names every column its own way, lists one add-on as
# `Extra <id>: <name>` and counts goods in the columns after `Total`.
CROWDMINT = PlatformLayout(
    platform="crowdmint",
    signatures=(
        Signature(
            "supporter ref + tier code",
            ("Supporter Ref", "Tier Code"),
            ("Supporter Ref", "Mail", "Paid", "Tier Code"),
        ),
    ),
    columns={
        "Supporter Ref": (PLEDGE_KEY,),
        "Mail": (EMAIL,),
        "Full Name": ("backer_name",),
        "Tier Code": ("reward_id",),
        "Tier": ("reward_title",),
        "Tier Price": ("reward_minimum",),
        "Paid": ("amount",),
        "Paid On": ("pledged_at",),
        "Answered On": ("responded_at",),
        "Ship To": ("shipping_name",),
        "Street": ("shipping_address_1",),
        "Town": ("shipping_city",),
        "Land": ("shipping_country_code", "country"),
    },
    required=(("Supporter Ref", PLEDGE_KEY), ("Mail", EMAIL)),
    variants=(Variant("supporters, {items} goods"),),
    addon_pattern=re.compile(r"^extra (\d+): (.+)$", re.IGNORECASE),
    items_after="Total",
)
HEADERS = [
    "Supporter Ref", "Mail", "Full Name", "Tier Code", "Tier", "Tier Price", "Paid", "Paid On",
    "Answered On", "Ship To", "Street", "Town", "Land", "Gift Note", "Extra 31: Dice Bag",
    "Total", "Mug", "Poster",
]  # fmt: skip
ROWS = [
    ["CM-1", "ada@example.com", "Ada", "T1", "Core", "€40.00", "€52.00", "2026-03-01 10:00",
     "2026-04-02 09:30", "Ada L", "1 Rue A", "Lyon", "FR", "", "1", "€52.00", "1", "0"],
    ["CM-2", "ben@example.com", "Ben", "T2", "Deluxe", "€90.00", "€90.00", "2026-03-02 11:15",
     "", "", "", "", "", "for my son", "0", "€90.00", "2", "1"],
    ["CM-3", "cy@example.com", "Cy", "T1", "Core", "€40.00", "€64.00", "2026-03-03 12:45",
     "2026-04-05 18:00", "Cy M", "2 Kade", "Gent", "BE", "", "2", "€64.00", "0", "0"],
]  # fmt: skip


def crowdmint_file() -> bytes:
    out = io.StringIO()
    csv.writer(out).writerows([HEADERS, *ROWS])
    return out.getvalue().encode()


@pytest.fixture
def crowdmint(monkeypatch: pytest.MonkeyPatch) -> Iterator[PlatformLayout]:
    """Crowdmint added to the platforms, after every platform pledgeflow ships."""
    monkeypatch.setattr(platforms, "LAYOUTS", (*platforms.LAYOUTS, CROWDMINT))
    monkeypatch.setattr(platforms, "PLATFORMS", (*platforms.PLATFORMS, CROWDMINT.platform))
    platforms.resolve_layout.cache_clear()
    yield CROWDMINT
    platforms.resolve_layout.cache_clear()


def test_without_its_layout_the_file_is_an_unknown_layout(db: Engine, tmp_path: Path) -> None:
    with pytest.raises(platforms.UnknownLayoutError):
        platforms.resolve_layout(tuple(HEADERS))
    result = import_path(write_file(tmp_path, "crowdmint.csv", crowdmint_file()))

    assert result.status == "FAILED"
    assert (result.errors or {})["error"]["code"] == "unknown_layout"
    assert outcome(db)["pledges"] == 0


@pytest.mark.usefixtures("crowdmint")
def test_a_made_up_platform_given_as_a_layout_alone_imports_its_file(
    db: Engine, tmp_path: Path
) -> None:
    result = import_path(write_file(tmp_path, "crowdmint.csv", crowdmint_file()), chunk_size=2)

    assert result.status == "COMPLETED", result.errors
    assert (result.platform, result.total_rows, result.imported_rows) == ("crowdmint", 3, 3)
    with db.connect() as conn:
        detection = conn.execute(text("SELECT stats -> 'detection' FROM csv_upload")).scalar_one()
    assert (detection["signature"], detection["variant"]) == (
        "supporter ref + tier code",
        "supporters, 2 goods",
    )
    assert detection["unmapped_columns"] == ["Gift Note", "Total"]
    held = outcome(db)
    assert len(held) == 7
    assert (held["backers"], held["pledges"], held["surveys"], held["inventory"]) == (3, 3, 3, 5)
    assert held["products"] == {"reward": 2, "addon": 1, "item": 2}
    assert held["units"] == {"Dice Bag": 3, "Mug": 3, "Poster": 1}
    assert held["sums"] == {"EUR": "206.00"}
    with db.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT p.pledge_id, p.platform, b.email, pr.external_id, s.shipping_city, "
                "s.answers FROM pledge p JOIN backer b ON b.id = p.backer_id "
                "JOIN product pr ON pr.id = p.product_id "
                "JOIN survey s ON s.pledge_id = p.id ORDER BY p.pledge_id"
            )
        ).all()
    assert [tuple(r) for r in stored] == [
        ("CM-1", "crowdmint", "ada@example.com", "T1", "Lyon", {"Total": "€52.00"}),
        ("CM-2", "crowdmint", "ben@example.com", "T2", None,
         {"Gift Note": "for my son", "Total": "€90.00"}),
        ("CM-3", "crowdmint", "cy@example.com", "T1", "Gent", {"Total": "€64.00"}),
    ]  # fmt: skip
