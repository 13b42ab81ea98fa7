"""Unchanged means unwritten: a re-import leaves every row version alone, with both loaders.

PostgreSQL gives each row version its own `xmin`; an UPDATE that writes the same values still
makes a new version, so comparing `xmin` before and after shows every row a re-import wrote.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from tests.exports_backerkit import Backer
from tests.exports_backerkit_tiers import TIER_SKUS, export, newer_export, older_export
from tests.helpers import configured, import_path, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")

TABLES = ("backer", "product", "pledge", "survey", "inventory")

# What a campaign holds, without ids or positions, scoped to a shop (backers are the shop's).
CONTENT = {
    "backer": "SELECT email, name, phone, country, external_id FROM backer WHERE shop = :shop",
    "product": """SELECT p.kind::text, p.product_key, p.name, p.external_id, p.price, p.currency
                  FROM product p JOIN project j ON j.id = p.project_id WHERE j.shop = :shop""",
    "pledge": """SELECT pl.pledge_id, b.email, pr.kind::text, pr.product_key, pl.amount,
                        pl.shipping_amount, pl.currency, pl.status, pl.pledged_at, pl.platform
                 FROM pledge pl JOIN backer b ON b.id = pl.backer_id
                 JOIN project j ON j.id = pl.project_id
                 LEFT JOIN product pr ON pr.id = pl.product_id WHERE j.shop = :shop""",
    "survey": """SELECT pl.pledge_id, s.responded_at, s.shipping_name, s.shipping_address_1,
                        s.shipping_city, s.shipping_country_code, CAST(s.answers AS TEXT)
                 FROM survey s JOIN pledge pl ON pl.id = s.pledge_id
                 JOIN project j ON j.id = pl.project_id WHERE j.shop = :shop""",
    "inventory": """SELECT pl.pledge_id, pr.kind::text, pr.product_key, i.quantity
                    FROM inventory i JOIN survey s ON s.id = i.survey_id
                    JOIN pledge pl ON pl.id = s.pledge_id JOIN product pr ON pr.id = i.product_id
                    JOIN project j ON j.id = pl.project_id WHERE j.shop = :shop""",
}


def row_versions(engine: Engine) -> dict[str, dict[int, str]]:
    """`{table: {id: xmin}}` for every row of the five data tables."""
    with engine.connect() as conn:
        return {
            table: dict(conn.execute(text(f"SELECT id, xmin::text FROM {table}")).all())
            for table in TABLES
        }


def contents(engine: Engine, shop: str) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as conn:
        return {
            name: sorted((tuple(r) for r in conn.execute(text(sql), {"shop": shop})), key=repr)
            for name, sql in CONTENT.items()
        }


def with_repeats(rows: list[Backer]) -> list[Backer]:
    """The export plus rows that repeat a pledge key and an email in later chunks."""
    out = copy.deepcopy(rows)
    again = copy.deepcopy(out[3])  # the same pledge, re-exported with another SKU count
    again.skus = {**TIER_SKUS[again.reward], "BH": "5"}
    second = copy.deepcopy(out[4])  # the same person, a second pledge, a new phone-less name
    second.id, second.name = 900, "Second Pledge Name"
    return [*out, again, second]


def test_reimporting_the_same_file_rewrites_no_row(
    db: Engine, tmp_path: Path, write_path: str
) -> None:
    path = write_file(tmp_path, "backerkit.csv", export(with_repeats(newer_export())))
    first = import_path(path, chunk_size=7, currency="USD")
    assert first.status == "COMPLETED"
    before = row_versions(db)
    assert all(before[t] for t in TABLES)

    # Every chunk mapped and written, not skipped as unchanged (test_chunk_skip.py).
    with configured(skip_unchanged_chunks="0"):
        second = import_path(path, chunk_size=7, currency="USD")

    assert second.status == "COMPLETED"
    tables = (second.stats or {})["tables"]
    for table in TABLES:
        assert (tables[table]["created"], tables[table]["updated"]) == (0, 0), table
        assert tables[table]["deleted"] == 0, table
        assert tables[table]["unchanged"] > 0, table
    assert row_versions(db) == before
    with db.connect() as conn:
        # Positions still name the upload that last changed each row: the first.
        assert conn.execute(text("SELECT DISTINCT upload_id FROM pledge")).scalars().all() == [
            first.upload_id
        ]
        assert conn.execute(
            text("SELECT DISTINCT source_upload_id FROM backer")
        ).scalars().all() == [first.upload_id]
        # The later row of a repeated key won, as it did on the first import.
        lines = (
            conn.execute(
                text(
                    "SELECT i.quantity FROM inventory i JOIN survey s ON s.id = i.survey_id "
                    "JOIN pledge p ON p.id = s.pledge_id JOIN product pr ON pr.id = i.product_id "
                    "WHERE p.pledge_id = '4' AND pr.product_key = 'BH'"
                )
            )
            .scalars()
            .all()
        )
        assert lines == [5]
        name = conn.execute(
            text("SELECT name FROM backer WHERE email = 'backer5@example.com'")
        ).scalar_one()
        assert name == "Second Pledge Name"


def test_an_older_export_then_the_newer_leaves_what_the_newer_alone_does(
    db: Engine, tmp_path: Path, write_path: str
) -> None:
    older = write_file(tmp_path, "older.csv", export(older_export()))
    newer = write_file(tmp_path, "newer.csv", export(newer_export()))

    for path in (older, newer):
        result = import_path(path, chunk_size=6, shop="both.example.com", currency="USD")
        assert result.status == "COMPLETED"
    alone = import_path(newer, chunk_size=6, shop="alone.example.com", currency="USD")
    assert alone.status == "COMPLETED"

    both, only = contents(db, "both.example.com"), contents(db, "alone.example.com")
    for table in CONTENT:
        assert both[table] == only[table], table
    assert len(only["pledge"]) == len(newer_export())
    assert {r[3] for r in only["pledge"]} >= {"5101", "5112"}
