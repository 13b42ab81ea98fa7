"""Gamefound-style pledge files through the upload flow, against PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from schemas.platforms import resolve_layout
from tests.exports_gamefound import (
    WITH_NUMBER,
    WITHOUT_NUMBER,
    render,
    sample_by_email,
    sample_numbered,
)
from tests.helpers import checksums, import_path, outcome, rejected, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_template_layouts() -> None:
    numbered = resolve_layout(tuple(WITH_NUMBER))
    assert (numbered.platform, numbered.variant) == ("gamefound", "pledge import template")
    assert numbered.fields["pledge_key"] == 0
    assert numbered.unmapped_headers == ["Bonus support"]
    by_email = resolve_layout(tuple(WITHOUT_NUMBER))
    assert by_email.variant == "pledge import template, keyed by email"
    assert by_email.key_from_email
    assert by_email.detection()["pledge_key"] == "email"


def test_numbered_pledges_import_exact_counts(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "gamefound.csv", render(sample_numbered()))

    result = import_path(path, chunk_size=4)

    assert result.status == "COMPLETED"
    assert result.platform == "gamefound"
    assert (result.total_rows, result.imported_rows, result.rejected_rows) == (6, 4, 2)
    assert rejected(result) == [(3, "missing_key", "Backer number"), (5, "missing_email", "E-mail")]
    assert outcome(db) == {
        "backers": 4,
        "pledges": 4,
        "products": {"reward": 2},
        "surveys": 4,
        "inventory": 0,
        "units": {},
        "sums": {"EUR": "281.00"},
    }
    with db.connect() as conn:
        bonus = conn.execute(
            text(
                "SELECT answers FROM survey s JOIN pledge p ON p.id = s.pledge_id "
                "WHERE p.pledge_id = '1'"
            )
        ).scalar_one()
    assert bonus == {"Bonus support": "€5.00"}


def test_pledges_without_backer_number_are_keyed_by_email(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "by-email.csv", render(sample_by_email(), WITHOUT_NUMBER))

    result = import_path(path, chunk_size=3)
    before = checksums(db)
    again = import_path(path, chunk_size=3)

    assert (result.total_rows, result.imported_rows, result.rejected_rows) == (4, 3, 1)
    assert rejected(result) == [(3, "missing_email", "Email")]
    assert outcome(db) == {
        "backers": 2,
        "pledges": 2,
        "products": {"reward": 2},
        "surveys": 2,
        "inventory": 0,
        "units": {},
        "sums": {"EUR": "134.00"},
    }
    with db.connect() as conn:
        pledges: dict[str, str] = dict(
            conn.execute(text("SELECT pledge_id, amount::text FROM pledge")).all()
        )
    assert pledges == {"alice@example.com": "64.00", "bob@example.com": "70.00"}
    assert checksums(db) == before
    assert all(t["created"] == 0 for t in (again.stats or {})["tables"].values())
