"""Indiegogo contributions files through the upload flow, against PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from schemas.platforms import resolve_layout
from tests.exports_indiegogo import HEADERS, render, sample
from tests.helpers import checksums, import_path, outcome, rejected, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_layout_is_positional_with_four_item_groups() -> None:
    layout = resolve_layout(tuple(HEADERS))
    assert len(HEADERS) == 45
    assert (layout.platform, layout.variant) == ("indiegogo", "contributions, 4 item groups")
    assert layout.item_name_groups == ((25, 26), (30, 31), (35, 36), (40, 41))
    assert layout.fields["pledge_key"] == HEADERS.index("Pledge ID")
    assert layout.fields["amount"] == HEADERS.index("Amount")
    assert layout.fields["shipping_amount"] == HEADERS.index("Shipping Fees")
    assert layout.fields["reward_title"] == HEADERS.index("Perk")
    assert layout.fields["reward_id"] == HEADERS.index("Perk ID")
    assert layout.fields["status"] == HEADERS.index("Fulfillment Status")
    assert layout.fields["pledged_at"] == HEADERS.index("Funding Date")
    assert layout.fields["shipping_postal_code"] == HEADERS.index("Shipping Zip/Postal Code")
    assert layout.unmapped_headers == [
        "Order No.",
        "Referrer ID",
        "Payment Method",
        "Appearance",
        "Platform Fee",
        "Transaction Fee",
        "Carrier",
        "Tracking Number",
        "Item SKU",
        "Option 1",
        "Option 2",
        "Option 3",
        "Item SKU (2)",
        "Option 1 (2)",
        "Option 2 (2)",
        "Option 3 (2)",
        "Item SKU (3)",
        "Option 1 (3)",
        "Option 2 (3)",
        "Option 3 (3)",
        "Item SKU (4)",
        "Option 1 (4)",
        "Option 2 (4)",
        "Option 3 (4)",
    ]


def test_contributions_import_exact_counts(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "contributions.csv", render(sample(), bom=True))

    result = import_path(path, chunk_size=4)

    assert result.status == "COMPLETED"
    assert result.platform == "indiegogo"
    assert (result.total_rows, result.imported_rows, result.rejected_rows) == (12, 10, 2)
    assert result.total_chunks == result.completed_chunks == 3
    assert rejected(result) == [(5, "invalid_money", "Amount"), (9, "missing_email", "Email")]
    assert outcome(db) == {
        "backers": 8,  # ann and ben contribute twice
        "pledges": 10,
        "products": {"reward": 2, "item": 4},
        "surveys": 10,
        "inventory": 10,
        "units": {"T-Shirt": 5, "Sticker": 3, "Poster": 5, "Mug": 1},
        "sums": {"USD": "1285.00", "GBP": "45.00"},
    }
    stats = result.stats or {}
    assert stats["detection"]["platform"] == "indiegogo"
    assert stats["detection"]["signature"] == "perk id + perk + pledge id or order no."
    assert stats["detection"]["unmapped_columns"][:2] == ["Order No.", "Referrer ID"]
    assert stats["currencies"] == {
        "GBP": {"pledges": 1, "amount": "45.00"},
        "USD": {"pledges": 9, "amount": "1285.00"},
    }
    assert [n["code"] for n in stats["notes"]] == ["mixed_currency"]
    with db.connect() as conn:
        donations = conn.execute(
            text("SELECT pledge_id FROM pledge WHERE product_id IS NULL ORDER BY pledge_id")
        ).scalars()
        assert list(donations) == ["1003", "1006", "1012"]
        lines: dict[str, int] = dict(
            conn.execute(
                text(
                    "SELECT pr.name, i.quantity FROM inventory i "
                    "JOIN product pr ON pr.id = i.product_id JOIN survey s ON s.id = i.survey_id "
                    "JOIN pledge p ON p.id = s.pledge_id WHERE p.pledge_id = '1004'"
                )
            ).all()
        )
        assert lines == {"T-Shirt": 2, "Sticker": 1}  # the same item twice in one row sums
        skus: dict[str, str] = dict(
            conn.execute(text("SELECT name, external_id FROM product WHERE kind = 'item'")).all()
        )
        assert skus == {"T-Shirt": "TS", "Sticker": "ST", "Poster": "PO", "Mug": "MG"}
        answers = conn.execute(
            text(
                "SELECT answers FROM survey s JOIN pledge p ON p.id = s.pledge_id "
                "WHERE p.pledge_id = '1002'"
            )
        ).scalar_one()
        assert answers["Order No."] == "ORD-1002"
        assert answers["Item SKU (3)"] == "PO"
        ann = conn.execute(
            text("SELECT name, phone FROM backer WHERE email = 'ann@example.com'")
        ).one()
        assert tuple(ann) == ("Ann", "555-0100")


def test_reimporting_contributions_changes_nothing(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "contributions.csv", render(sample()))
    import_path(path, chunk_size=5)
    before = checksums(db)

    second = import_path(path, chunk_size=5)

    assert checksums(db) == before
    tables = (second.stats or {})["tables"]
    assert all(t["created"] == 0 and t["deleted"] == 0 for t in tables.values()), tables
    assert tables["pledge"]["unchanged"] == 10
