"""The real `pledgeflow` console script on SQLite, against the Prefect test harness's server."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prefect.settings import PREFECT_API_URL
from sqlalchemy.engine import Engine

from tests.exports import HEADERS, backers, render
from tests.helpers import count, write_file

ROOT = Path(__file__).resolve().parents[1]
CLI = ROOT / ".venv" / "bin" / "pledgeflow"
SAMPLE = ROOT / "samples" / "kickstarter-2020.csv"
SHOP = "demo.example.com"
SUMMARY_FIELDS = {
    "upload_id",
    "status",
    "platform",
    "total_rows",
    "imported_rows",
    "rejected_rows",
    "total_chunks",
    "completed_chunks",
    "failed_chunks",
}
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
        return subprocess.run(
            [str(CLI), *map(str, args)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )

    return run


def json_out(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The one JSON object `--json` prints on stdout."""
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line, got stdout={result.stdout!r}"
    data = json.loads(lines[0])
    assert isinstance(data, dict)
    assert set(data) >= SUMMARY_FIELDS
    return data


def import_json(run: Run, path: Path, *extra: str, project: str = "Demo") -> tuple[int, dict]:
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
    assert listed == [[f"row {row}", code_, column] for row, code_, column in SAMPLE_REJECTED]

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


def test_small_chunks_on_sqlite_give_the_same_totals(cli: Run, sqlite_db: Engine) -> None:
    code, data = import_json(cli, SAMPLE, "--chunk-size", "7")

    assert code == 0, data
    assert data["status"] == "COMPLETED", data.get("error")
    assert (data["total_rows"], data["imported_rows"], data["rejected_rows"]) == (40, 37, 3)
    assert (data["total_chunks"], data["completed_chunks"], data["failed_chunks"]) == (6, 6, 0)
    assert data["stats"]["tables"]["pledge"]["created"] == 37
    assert count(sqlite_db, "SELECT count(*) FROM pledge") == 37
    assert count(sqlite_db, "SELECT count(*) FROM backer") == 33
    rows = count(
        sqlite_db,
        "SELECT count(*) FROM csv_upload_chunk WHERE upload_id = :u AND status = 'COMPLETED'",
        u=data["upload_id"],
    )
    assert rows == 6

    errors = cli("errors", str(data["upload_id"]))
    listed = [line.split("\t")[:3] for line in errors.stdout.splitlines() if line.strip()]
    assert listed == [[f"row {row}", code_, column] for row, code_, column in SAMPLE_REJECTED]


def test_unknown_layout_fails_naming_missing_headers(
    cli: Run, sqlite_db: Engine, tmp_path: Path
) -> None:
    data = render("2020", backers(3)).decode()
    lines = data.splitlines()
    headers = HEADERS["2020"]
    lines[0] = ",".join(h if h != "Backer UID" else "Backer Ref" for h in headers)
    path = write_file(tmp_path, "odd.csv", ("\n".join(lines) + "\n").encode())

    code, out = import_json(cli, path)

    assert code != 0
    assert out["status"] == "FAILED"
    assert out["platform"] is None
    assert out["error"]["code"] == "unknown_layout"
    assert out["error"]["closest_platform"] == "kickstarter"
    assert out["error"]["missing_headers"] == ["Backer UID"]
    assert (out["imported_rows"], out["completed_chunks"]) == (0, 0)
    assert count(sqlite_db, "SELECT count(*) FROM pledge") == 0


def test_missing_file_and_unknown_upload_exit_2(cli: Run, tmp_path: Path) -> None:
    missing = cli("import", tmp_path / "nope.csv", "--shop", SHOP, "--project", "Demo", "--json")
    assert missing.returncode == 2, (missing.stdout, missing.stderr)
    assert "file_not_found" in missing.stderr

    unknown = cli("status", "999999")
    assert unknown.returncode == 2, (unknown.stdout, unknown.stderr)
    assert "999999" in unknown.stderr


def test_file_whose_only_row_is_rejected_completes(cli: Run, tmp_path: Path) -> None:
    people = backers(1)
    people[0].email = ""
    path = write_file(tmp_path, "one-bad-row.csv", render("2020", people))

    code, out = import_json(cli, path)

    assert out["status"] == "COMPLETED", out.get("error")
    assert code == 0
    assert (out["total_rows"], out["imported_rows"], out["rejected_rows"]) == (1, 0, 1)
