"""Dry runs predict exactly what the real import then does, and write no data rows."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from flows.process_upload import process_upload
from pledgeflow.dry_runs import read_dry_run
from pledgeflow.settings import get_settings
from pledgeflow.staging import stage_file
from pledgeflow.status import UploadResult
from pledgeflow.uploads import read_upload
from pledgeflow_bench.exports import Backer, backers, render
from tests.helpers import checksums, count, import_path, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")


def dry_then_real(db: Engine, path: Path) -> tuple[UploadResult, UploadResult]:
    """Stage a file, dry-run it (asserting no data table changed), then import it for real."""
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=8)
    before = checksums(db)
    process_upload(upload_id, dry_run=True, return_state=True)
    assert checksums(db) == before
    predicted = read_dry_run(upload_id)
    assert predicted is not None
    assert read_upload(upload_id).status == "PENDING"
    process_upload(upload_id, return_state=True)
    return predicted, read_upload(upload_id)


def writes(result: UploadResult) -> dict[str, dict[str, Any]]:
    """Created, updated and deleted per table (what a dry run must predict exactly)."""
    tables = (result.stats or {})["tables"]
    kinds = ("created", "updated", "deleted")
    return {name: {k: counts[k] for k in kinds} for name, counts in tables.items()}


def test_dry_run_of_a_new_file_predicts_the_import(db: Engine, tmp_path: Path) -> None:
    rows = backers(30)
    rows[4].email = ""
    rows[20].pledge = "lots"
    path = write_file(tmp_path, "new.csv", render("2020", rows))

    predicted, real = dry_then_real(db, path)

    assert predicted.dry_run and predicted.status == real.status == "COMPLETED"
    assert (predicted.imported_rows, predicted.rejected_rows) == (28, 2)
    assert (real.imported_rows, real.rejected_rows) == (28, 2)
    assert writes(predicted) == writes(real)
    assert writes(real)["pledge"] == {"created": 28, "updated": 0, "deleted": 0}
    # 3 tiers, 2 add-ons and the Wooden Insert item (the Dice Tower item shares the add-on).
    assert writes(real)["product"]["created"] == 6
    assert (predicted.errors or {})["by_code"] == (real.errors or {})["by_code"]
    assert (predicted.stats or {})["currencies"] == (real.stats or {})["currencies"]


def test_dry_run_of_a_changed_file_predicts_updates_and_deletions(
    db: Engine, tmp_path: Path
) -> None:
    rows = backers(30)
    rows[2].addons = (2, 1)
    import_path(write_file(tmp_path, "v1.csv", render("2020", rows)), chunk_size=8)
    rows[2].addons = (2, 0)  # the add-on line disappears
    rows[5].pledge = "$999.00 USD"  # a pledge changes
    rows[9].name = "Renamed"  # a backer changes
    rows += [Backer(number=n, email=f"new{n}@example.com", name=f"New {n}") for n in (31, 32)]
    path = write_file(tmp_path, "v2.csv", render("2020", rows))

    predicted, real = dry_then_real(db, path)

    assert writes(predicted) == writes(real)
    assert writes(real)["pledge"] == {"created": 2, "updated": 1, "deleted": 0}
    assert writes(real)["backer"] == {"created": 2, "updated": 1, "deleted": 0}
    assert writes(real)["inventory"]["deleted"] == 1
    assert count(db, "SELECT count(*) FROM pledge") == 32


def test_dry_run_leaves_the_upload_pending_with_its_rejections(db: Engine, tmp_path: Path) -> None:
    rows = backers(10)
    rows[6].pledged_at = "someday"
    path = write_file(tmp_path, "dry.csv", render("2017", rows))
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=4)

    process_upload(upload_id, dry_run=True, return_state=True)

    upload = read_upload(upload_id)
    assert (upload.status, upload.imported_rows, upload.rejected_rows) == ("PENDING", 0, 0)
    assert (upload.stats or {})["detection"]["platform"] == "kickstarter"
    with db.connect() as conn:
        chunks = conn.execute(
            text("SELECT status, errors FROM csv_upload_chunk ORDER BY chunk_index")
        ).all()
    assert [c.status for c in chunks] == ["PENDING"] * 3
    assert [(e["row"], e["code"]) for e in chunks[1].errors["rejected"]] == [(7, "invalid_date")]
    for table in ("backer", "product", "pledge", "survey", "inventory"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0


def test_dry_run_of_an_unknown_layout_predicts_failure(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "unknown.csv", b"Foo,Bar\n1,2\n")
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign")

    state = process_upload(upload_id, dry_run=True, return_state=True)

    assert state.is_failed()
    predicted = read_dry_run(upload_id)
    assert predicted is not None and predicted.status == "FAILED"
    assert (predicted.errors or {})["error"]["code"] == "unknown_layout"
    assert read_upload(upload_id).status == "PENDING"


def test_dry_run_predicts_every_count_of_the_real_run_on_postgresql(
    db: Engine, tmp_path: Path
) -> None:
    """The dry run writes through the import's own writers (on PostgreSQL: rows staged by COPY,
    then the same statements) in a transaction it rolls back, so its created, updated,
    unchanged and deleted counts per table are those of the real run."""
    rows = backers(40)
    rows[3].addons = (2, 1)
    import_path(write_file(tmp_path, "v1.csv", render("2020", rows)), chunk_size=8)
    rows[3].addons = (2, 0)  # an inventory line disappears
    rows[7].pledge = "$999.00 USD"  # a pledge changes
    rows[11].name = "Renamed"  # a backer changes
    rows[15].survey_at = "2021/01/02, 03:04"  # a survey changes
    rows += [Backer(number=n, email=f"new{n}@example.com", name=f"New {n}") for n in (41, 42)]

    predicted, real = dry_then_real(db, write_file(tmp_path, "v2.csv", render("2020", rows)))

    assert db.dialect.name == "postgresql" and get_settings().write_path == "auto"
    assert (predicted.stats or {})["tables"] == (real.stats or {})["tables"]
    tables = (real.stats or {})["tables"]
    assert tables["pledge"] == {"created": 2, "updated": 1, "unchanged": 39, "deleted": 0}
    assert tables["backer"] == {"created": 2, "updated": 1, "unchanged": 39, "deleted": 0}
    assert (tables["survey"]["updated"], tables["inventory"]["deleted"]) == (1, 1)
