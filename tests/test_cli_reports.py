"""The `pledgeflow` command line: detection report, currency notes and dry runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from pledgeflow.cli import app
from tests.exports_backerkit import render as render_backerkit
from tests.exports_backerkit import sample as backerkit_sample
from tests.exports_indiegogo import render, sample
from tests.helpers import checksums, count, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")
IMPORT = ["import", "--shop", "shop.example.com", "--project", "Campaign"]


def test_import_prints_detection_and_mixed_currency(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "contributions.csv", render(sample()))

    run = CliRunner().invoke(app, [*IMPORT, str(path)])

    assert run.exit_code == 0, run.output
    lines = run.stdout.splitlines()
    assert lines[0].endswith(": COMPLETED (indiegogo)")
    assert lines[1] == (
        "  detected: indiegogo contributions, 4 item groups "
        "(signature: perk id + perk + pledge id or order no.; pledge key: Pledge ID)"
    )
    assert lines[2].startswith("  dates: Funding Date as ")
    assert lines[3].startswith("  kept in survey.answers (24): Order No., Referrer ID, ")
    assert "  rows: 12 total, 10 imported, 2 rejected" in lines
    assert "  pledged: 45.00 GBP (1 pledges), 1,285.00 USD (9 pledges)" in lines
    assert any(line.startswith("  note: mixed_currency: the upload's pledges") for line in lines)


def test_import_json_carries_the_detection_report(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "backerkit.csv", render_backerkit(backerkit_sample()))

    run = CliRunner().invoke(app, [*IMPORT, str(path), "--currency", "usd", "--json"])

    summary = json.loads(run.stdout)
    assert summary["detection"]["platform"] == "backerkit"
    assert summary["detection"]["signature"] == "funds added in backerkit"
    assert summary["detection"]["pledge_key"] == "Id"
    assert "Full Address" in summary["detection"]["unmapped_columns"]
    assert summary["stats"]["currencies"] == {"USD": {"pledges": 6, "amount": "2245.50"}}
    assert (summary["dry_run"], summary["imported_rows"], summary["rejected_rows"]) == (False, 6, 3)


def test_dry_run_prints_the_same_summary_and_writes_nothing(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "contributions.csv", render(sample()))
    before = checksums(db)
    # One chunk keeps both of ben's rows (2 and 10) together: across chunks, whether the
    # later row counts as an update depends on the order the real import commits them.

    dry = CliRunner().invoke(
        app, [*IMPORT, str(path), "--dry-run", "--json", "--chunk-size", "100"]
    )
    text_run = CliRunner().invoke(app, [*IMPORT, str(path), "--dry-run"])

    assert dry.exit_code == 0, dry.output
    assert checksums(db) == before
    assert count(db, "SELECT count(*) FROM pledge") == 0
    predicted = json.loads(dry.stdout)
    assert predicted["dry_run"] is True
    assert (predicted["status"], predicted["imported_rows"], predicted["rejected_rows"]) == (
        "COMPLETED",
        10,
        2,
    )
    assert predicted["stats"]["tables"]["pledge"]["created"] == 10
    assert predicted["stats"]["tables"]["backer"]["created"] == 8
    assert text_run.stdout.splitlines()[0].endswith(
        "(dry run, nothing written): would be COMPLETED (indiegogo)"
    )
    assert "  pledge: 10 created, 0 updated, 0 unchanged" in text_run.stdout.splitlines()

    real = CliRunner().invoke(app, [*IMPORT, str(path), "--json", "--chunk-size", "100"])

    actual = json.loads(real.stdout)
    assert actual["dry_run"] is False
    for table, counts in actual["stats"]["tables"].items():
        assert counts == predicted["stats"]["tables"][table], table
