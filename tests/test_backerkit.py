"""BackerKit backer exports (2017 layout) through the upload flow, against PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from schemas.platforms import detect_platform, resolve_layout
from tests.exports_backerkit import HEADERS, SKUS, render, sample
from tests.helpers import checksums, import_path, outcome, rejected, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_layout_maps_named_columns_and_sku_counts() -> None:
    layout = resolve_layout(tuple(HEADERS))
    assert detect_platform(HEADERS).name == "funds added in backerkit"
    assert layout.platform == "backerkit"
    assert layout.item_columns == tuple((HEADERS.index(s), s) for s in SKUS)
    assert layout.fields["pledge_key"] == HEADERS.index("Id")
    assert "backer_external_id" not in layout.fields  # no person id in this export
    assert "Service Guid" in layout.unmapped_headers
    assert layout.fields["status"] == HEADERS.index("Pledge Status")
    assert layout.fields["reward_title"] == HEADERS.index("Reward Description")
    assert "Reward Description" in layout.unmapped_headers  # kept whole as well
    assert "Full Address" in layout.unmapped_headers
    assert "Total Spent" in layout.unmapped_headers


def test_backer_export_imports_exact_counts(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "backerkit.csv", render(sample()))

    result = import_path(path, chunk_size=4, currency="USD")

    assert result.status == "COMPLETED"
    assert result.platform == "backerkit"
    assert (result.total_rows, result.imported_rows, result.rejected_rows) == (9, 6, 3)
    assert rejected(result) == [
        (5, "missing_email", "Email"),
        (6, "invalid_date", "Pledged At"),
        (9, "invalid_quantity", "CL"),
    ]
    assert outcome(db) == {
        "backers": 5,  # ada pledges twice
        "pledges": 6,
        "products": {"reward": 2, "item": 4},
        "surveys": 6,
        "inventory": 7,
        "units": {"BH": 3, "BO": 2, "CL": 2, "D60ROLLR": 3},
        "sums": {"USD": "2245.50"},
    }
    assert (result.stats or {})["notes"] == []
    with db.connect() as conn:
        backers = {
            email: (name, external_id)
            for email, name, external_id in conn.execute(
                text("SELECT email, name, external_id FROM backer")
            )
        }
        assert backers["tester+domestic@example.com"] == ("Test Backer", None)
        assert backers["bob@example.com"] == ("Bob Builder", None)  # Name blank: Address Name
        assert backers["ada@example.com"] == ("Ada L.", None)  # the later row wins
        rewards = set(
            conn.execute(text("SELECT name FROM product WHERE kind = 'reward'")).scalars()
        )
        assert rewards == {"Core Box", "Deluxe Box"}
        failed = conn.execute(
            text(
                "SELECT status, amount::text, currency, "
                "to_char(pledged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') "
                "FROM pledge WHERE pledge_id = '3'"
            )
        ).one()
        assert tuple(failed) == ("failed", "0.00", "USD", "2017-08-15 14:15")
        survey = conn.execute(
            text(
                "SELECT to_char(responded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'), "
                "shipping_name, shipping_country_code, shipping_country_name, answers "
                "FROM survey s JOIN pledge p ON p.id = s.pledge_id WHERE p.pledge_id = '2'"
            )
        ).one()
        assert survey[:4] == ("2017-08-20 17:00", "Ada", "US", "United States of America")
        answers = survey[4]
        assert answers["Full Address"].count("\n") == 3
        assert answers["Order Placed"] == "09/29/17"
        assert answers["Reward Description"] == "Core Box - the game, two dice bags"


def test_reimporting_a_backer_export_changes_nothing(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "backerkit.csv", render(sample()))
    import_path(path, chunk_size=3, currency="USD")
    before = checksums(db)

    second = import_path(path, chunk_size=3, currency="USD")

    assert checksums(db) == before
    tables = (second.stats or {})["tables"]
    assert all(t["created"] == 0 and t["deleted"] == 0 for t in tables.values()), tables
    assert tables["pledge"]["unchanged"] == 6
