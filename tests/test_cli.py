"""The real `pledgeflow` console script on SQLite, against the Prefect test harness's server."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.command_errors import OUTCOME_FIELDS
from pledgeflow_bench.exports import HEADERS, backers, render
from tests.exports_corpus import KICKSTARTER_2015
from tests.helpers import count, export_without_emails, run_command, write_file

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "pledgeflow"
SAMPLE = ROOT / "samples" / "kickstarter-2020.csv"
SHOP = "demo.example.com"
# The fields every `--json` outcome holds (their values are pinned below).
SUMMARY_FIELDS = frozenset(OUTCOME_FIELDS)
# The sample's rejected rows: (data-row number, reason code, column).
SAMPLE_REJECTED = [
    (6, "missing_email", "Email"),
    (7, "invalid_money", "Pledge Amount"),
    (8, "invalid_date", "Pledged At"),
]

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(sqlite_db: Engine, prefect_harness: None, tmp_path: Path) -> Run:
    """Run the console script on the test's SQLite file and the harness's Prefect server."""
    assert CLI.is_file(), f"console script missing: {CLI}"
    env = {
        **os.environ,
        "PLEDGEFLOW_DATABASE_URL": sqlite_db.url.render_as_string(hide_password=False),
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
    }

    def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return run_command([CLI, *args], env=env, cwd=tmp_path, timeout=180)

    return run


def json_out(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object `--json` prints on stdout."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got stdout={result.stdout!r}"
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    assert set(data) >= SUMMARY_FIELDS
    return data


def _flow_of_upload(db: Engine, upload_id: int) -> tuple[str, str]:
    """The names of the flow whose run staged the upload, and of that run."""
    from prefect.client.orchestration import get_client

    with db.connect() as conn:
        run_id = conn.scalar(
            text("SELECT flow_run_id FROM csv_upload WHERE id = :id"), {"id": upload_id}
        )
    assert run_id, f"upload {upload_id} names no flow run"
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(run_id)
        return client.read_flow(run.flow_id).name, run.name


def import_json(
    run: Run, path: Path, *extra: str, project: str = "Demo"
) -> tuple[int, dict[str, Any]]:
    result = run("import", path, "--shop", SHOP, "--project", project, "--json", *extra)
    return result.returncode, (
        json_out(result) if result.stdout.strip() else {"stderr": result.stderr}
    )


def test_import_status_errors_and_reimport(cli: Run, sqlite_db: Engine) -> None:
    code, first = import_json(cli, SAMPLE)

    assert code == 0, first
    assert first["status"] == "COMPLETED"
    assert first["platform"] == "kickstarter"
    assert (first["total_rows"], first["imported_rows"], first["rejected_rows"]) == (40, 37, 3)
    assert (first["total_chunks"], first["completed_chunks"], first["failed_chunks"]) == (1, 1, 0)
    assert first["error"] is None
    assert first["by_code"] == {"invalid_date": 1, "invalid_money": 1, "missing_email": 1}
    tables = first["stats"]["tables"]
    assert tables["pledge"]["created"] == 37
    assert tables["backer"]["created"] == 33  # rows 10, 20, 30, 40 repeat an email
    assert count(sqlite_db, "SELECT count(*) FROM pledge") == 37
    upload_id = first["upload_id"]
    # The deployment's flow, its run named by the upload it staged.
    assert _flow_of_upload(sqlite_db, upload_id) == ("import-file", f"upload-{upload_id}")

    status = cli("status", str(upload_id))
    assert status.returncode == 0, status.stderr
    assert f"upload {upload_id}: COMPLETED (kickstarter)" in status.stdout
    assert "rows: 40 total, 37 imported, 3 rejected" in status.stdout
    assert "chunks: 1 total, 1 completed, 0 failed" in status.stdout
    status_json = cli("status", str(upload_id), "--json")
    assert status_json.returncode == 0, status_json.stderr
    assert {k: v for k, v in json_out(status_json).items() if k in SUMMARY_FIELDS} == {
        "upload_id": upload_id,
        "status": "COMPLETED",
        "platform": "kickstarter",
        "total_rows": 40,
        "imported_rows": 37,
        "rejected_rows": 3,
        "total_chunks": 1,
        "completed_chunks": 1,
        "failed_chunks": 0,
    }

    errors = cli("errors", str(upload_id))
    assert errors.returncode == 0, errors.stderr
    listed = [line.split("\t")[:3] for line in errors.stdout.splitlines() if line.strip()]
    assert listed == [[f"row {row}", column, code_] for row, code_, column in SAMPLE_REJECTED]

    code, again = import_json(cli, SAMPLE)
    assert code == 0, again
    assert again["upload_id"] != upload_id
    assert again["status"] == "COMPLETED"
    assert (again["total_rows"], again["imported_rows"], again["rejected_rows"]) == (40, 37, 3)
    assert {t: c["created"] for t, c in again["stats"]["tables"].items()} == {
        t: 0 for t in again["stats"]["tables"]
    }
    assert set(again["stats"]["tables"]) >= {"backer", "product", "pledge", "survey", "inventory"}
    assert count(sqlite_db, "SELECT count(*) FROM pledge") == 37
    assert count(sqlite_db, "SELECT count(*) FROM csv_upload") == 2


def test_small_chunks_on_sqlite_give_the_same_totals(
    cli: Run, sqlite_db: Engine, tmp_path: Path
) -> None:
    path = write_file(tmp_path, "250.csv", render("2020", backers(250, repeat_every=10)))

    code, data = import_json(cli, path, "--chunk-size", "100", project="Chunked")

    assert code == 0, data
    assert data["status"] == "COMPLETED", data.get("error")
    assert (data["total_rows"], data["imported_rows"], data["rejected_rows"]) == (250, 250, 0)
    assert (data["total_chunks"], data["completed_chunks"], data["failed_chunks"]) == (3, 3, 0)
    assert data["stats"]["tables"]["pledge"]["created"] == 250
    assert count(sqlite_db, "SELECT count(*) FROM pledge") == 250
    assert count(sqlite_db, "SELECT count(*) FROM backer") == 225  # every 10th email repeats
    rows = count(
        sqlite_db,
        "SELECT count(*) FROM csv_upload_chunk WHERE upload_id = :u AND status = 'COMPLETED'",
        u=data["upload_id"],
    )
    assert rows == 3


def test_unknown_layout_fails_naming_missing_headers(
    cli: Run, sqlite_db: Engine, tmp_path: Path
) -> None:
    data = render("2020", backers(3)).decode()
    lines = data.splitlines()
    headers = HEADERS["2020"]
    lines[0] = ",".join(h if h != "Backer UID" else "Backer Ref" for h in headers)
    path = write_file(tmp_path, "odd.csv", ("\n".join(lines) + "\n").encode())

    result = cli("import", path, "--shop", SHOP, "--project", "Demo", "--json")
    code, out = result.returncode, json_out(result)

    # Refused in a line: no traceback anywhere, from pledgeflow or from the flow run's logs.
    for stream in (result.stdout, result.stderr):
        assert "Traceback" not in stream and 'File "' not in stream, stream
    assert code == 1
    assert out["status"] == "FAILED"
    assert out["platform"] is None
    assert out["error"]["code"] == "unknown_layout"
    assert out["error"]["closest_platform"] == "kickstarter"
    assert out["error"]["missing_headers"] == ["Backer UID"]
    assert "--mapping FILE" in out["error"]["hint"]
    assert (out["imported_rows"], out["completed_chunks"]) == (0, 0)
    assert count(sqlite_db, "SELECT count(*) FROM pledge") == 0


def test_missing_file_and_unknown_upload_exit_2(cli: Run, tmp_path: Path) -> None:
    missing = cli("import", tmp_path / "nope.csv", "--shop", SHOP, "--project", "Demo", "--json")
    assert missing.returncode == 2, (missing.stdout, missing.stderr)
    assert "file_not_found" in missing.stderr

    unknown = cli("status", "999999")
    assert unknown.returncode == 2, (unknown.stdout, unknown.stderr)
    assert "999999" in unknown.stderr


def test_file_whose_only_row_is_rejected_fails(cli: Run, tmp_path: Path) -> None:
    # An upload that imports nothing did not succeed, however few its rows.
    people = backers(1)
    people[0].email = ""
    path = write_file(tmp_path, "one-bad-row.csv", render("2020", people))

    code, out = import_json(cli, path)

    assert out["status"] == "FAILED"
    assert code == 1
    assert (out["total_rows"], out["imported_rows"], out["rejected_rows"]) == (1, 0, 1)
    assert out["error"]["code"] == "all_rows_rejected"
    assert out["error"]["top_codes"] == {"missing_email": 1}


def test_2015_report_in_aud_imports_every_row_and_all_na_amounts_fail(
    cli: Run, sqlite_db: Engine, tmp_path: Path
) -> None:
    report = KICKSTARTER_2015
    path = write_file(tmp_path, "ks-2015.csv", report.render())

    code, out = import_json(cli, path)

    assert code == 0, out
    assert out["status"] == "COMPLETED"
    assert (out["total_rows"], out["imported_rows"], out["rejected_rows"]) == (3, 3, 0)
    with sqlite_db.connect() as conn:
        rows = conn.execute(text("SELECT pledge_id, amount, currency FROM pledge")).all()
    assert {r.pledge_id: (Decimal(str(r.amount)), r.currency) for r in rows} == {
        key: (pledge.amount, "AUD") for key, pledge in report.pledges.items()
    }
    status = cli("status", str(out["upload_id"]))
    assert "dates: Pledged At as YYYY-MM-DD, HH:MM; Survey Response as YYYY-MM-DD, HH:MM" in (
        status.stdout
    )

    money = {h: "n/a" for h in ("Pledge Amount", "Shipping Amount", "Reward Minimum")}
    failed_path = write_file(tmp_path, "ks-2015-na.csv", report.render(**money))
    code, failed = import_json(cli, failed_path)

    assert code == 1
    assert failed["status"] == "FAILED"
    assert (failed["imported_rows"], failed["rejected_rows"]) == (0, 3)
    assert failed["error"]["code"] == "all_rows_rejected"
    assert failed["error"]["top_codes"] == {"invalid_money": 3}
    assert failed["by_code"] == {"invalid_money": 3}  # rows, as rejected_rows counts them
    errors = cli("errors", str(failed["upload_id"]))
    assert errors.returncode == 0, errors.stderr
    lines = [line.split("\t") for line in errors.stdout.splitlines() if line.startswith("row ")]
    assert [line[:4] for line in lines[:3]] == [
        ["row 1", "Pledge Amount", "invalid_money", '"n/a"'],
        ["row 1", "Reward Minimum", "invalid_money", '"n/a"'],
        ["row 1", "Shipping Amount", "invalid_money", '"n/a"'],
    ]
    assert "$5.00 USD" in lines[0][4]  # the message names the money forms it expected
    assert "upload error: all_rows_rejected" in errors.stdout


def test_a_date_column_in_no_accepted_style_is_refused_once(
    cli: Run, sqlite_db: Engine, tmp_path: Path
) -> None:
    path = write_file(
        tmp_path, "epoch.csv", KICKSTARTER_2015.render(**{"Pledged At": "1439882580"})
    )

    result = cli("import", path, "--shop", SHOP, "--project", "Epoch")

    assert result.returncode == 1
    assert "Traceback" not in result.stdout  # stderr's flow-run traceback is issue 15's `door` part
    assert "error: unreadable_dates: no value of column 'Pledged At'" in result.stdout
    assert "--mapping" in result.stdout
    assert "column 'Pledged At', e.g. \"1439882580\"" in result.stdout
    # Without a terminal, a line of the flow's staging (told to the CLI in-process), then the
    # upload's own counters.
    shown = result.stderr.splitlines()
    assert any(re.fullmatch(r"staging: [\d,]+ rows read", line) for line in shown), shown
    assert any(line.startswith("upload 1 failed: 0/1 chunks") for line in shown), result.stderr
    errors = cli("errors", "1")
    assert "upload error: unreadable_dates" in errors.stdout
    assert "column 'Pledged At', e.g. \"1439882580\"" in errors.stdout
    assert count(sqlite_db, "SELECT count(*) FROM pledge") == 0
    assert count(sqlite_db, "SELECT count(*) FROM csv_upload_chunk WHERE status = 'PENDING'") == 1


def test_max_rejected_fraction_fails_an_upload_above_it(
    cli: Run, sqlite_db: Engine, tmp_path: Path
) -> None:
    path = export_without_emails(tmp_path, "one-in-four.csv", 4, missing=[0])

    code, tolerant = import_json(cli, path, "--max-rejected-fraction", "0.25")
    assert (code, tolerant["status"]) == (0, "COMPLETED")

    code, strict = import_json(cli, path, "--max-rejected-fraction", "0.2")
    assert (code, strict["status"]) == (1, "FAILED")
    assert strict["error"]["code"] == "too_many_rejected"
    assert strict["imported_rows"] == 3

    refused = cli("import", path, "--shop", SHOP, "--project", "P", "--max-rejected-fraction", "2")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr


def test_value_warnings_in_json_and_in_the_summary(cli: Run, tmp_path: Path) -> None:
    from tests.test_values_import import indiegogo_file

    path = indiegogo_file(tmp_path)

    code, summary = import_json(cli, path)
    plain = cli("status", summary["upload_id"])

    assert code == 0, summary
    warnings = {w["code"]: w for w in summary["warnings"]}
    assert warnings["excel_text_unwrapped"]["count"] == 5
    assert warnings["country_code_from_name"]["count"] == 5
    assert warnings["unknown_country"]["values"] == ["Narnia"]
    assert warnings["scientific_notation"]["columns"] == {"Shipping Phone Number": 1}
    assert "warning: excel_text_unwrapped 5:" in plain.stdout
    assert "warning: unknown_country 1:" in plain.stdout and "Narnia" in plain.stdout
    assert "(Shipping Phone Number 1)" in plain.stdout
