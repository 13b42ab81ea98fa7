"""The rejected-row report: complete, in file order, one line per row, safe in a spreadsheet."""

from __future__ import annotations

import csv
import io
import tracemalloc
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from pledgeflow.chunks import process_chunk
from pledgeflow.cli import app
from pledgeflow.reports import (
    FORMULA_STARTS,
    REPORT_COLUMNS,
    neutralize,
    shown_value,
    write_rejected_csv,
)
from pledgeflow.staging import stage_file
from pledgeflow.uploads import aggregate_upload, start_upload
from pledgeflow_bench.exports import HEADERS, backers, render
from schemas.frames import REASON_CODES
from tests.helpers import import_path, write_file

FORMULAS = [
    '=HYPERLINK("http://example.com","x")',
    "+1 555 0100",
    "@SUM(A1)",
    "-2+3",
    "\t=cmd",
    "\r=1",
]


@pytest.mark.parametrize(
    ("cell", "shown"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@x", "'@x"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        (" =1", "' =1"),  # spreadsheets skip leading blanks (OWASP)
        ("a=1", "a=1"),
        ("", ""),
        (None, ""),
    ],
)
def test_neutralize(cell: str | None, shown: str) -> None:
    assert neutralize(cell) == shown


@pytest.mark.usefixtures("prefect_harness")
def test_report_of_formula_like_cells_opens_with_no_formula(db: Engine, tmp_path: Path) -> None:
    rows = backers(8)
    rows[1].email = ""  # row 2
    rows[1].notes = FORMULAS[0]
    rows[1].name = FORMULAS[1]
    rows[3].pledge = "=1+1"  # row 4
    rows[3].name = FORMULAS[2]
    rows[4].pledge = "-"  # row 5 fails twice
    rows[4].pledged_at = FORMULAS[3]
    rows[4].name = FORMULAS[4]
    rows[5].notes = "=not rejected"  # row 6 imports
    records = list(csv.reader(io.StringIO(render("2017", rows).decode(), newline="")))
    # Set after rendering: the generator's "\n"-terminated writer would not quote a "\r".
    records[5][HEADERS["2017"].index("Notes")] = FORMULAS[5]
    records[7] = records[7][:3]  # row 7 is a short record
    out = io.StringIO()
    csv.writer(out).writerows(records)
    path = write_file(tmp_path, "formulas.csv", out.getvalue().encode())
    result = import_path(path, chunk_size=3)
    report = tmp_path / "rejected.csv"

    run = CliRunner().invoke(app, ["errors", str(result.upload_id), "--csv", str(report)])

    assert run.exit_code == 0, run.output
    assert "4 rejected rows written" in run.output
    with report.open(encoding="utf-8-sig", newline="") as handle:
        table = list(csv.reader(handle))
    header, body = table[0], table[1:]
    assert header == [*REPORT_COLUMNS, *HEADERS["2017"]]
    assert [line[0] for line in body] == ["2", "4", "5", "7"]
    by_row = {line[0]: dict(zip(header, line, strict=True)) for line in body}
    assert by_row["5"]["column"] == "Pledge Amount; Pledged At"
    assert by_row["5"]["code"] == "invalid_money; invalid_date"
    assert by_row["5"]["value"] == f"{shown_value('-')}; {shown_value(FORMULAS[3])}"
    assert by_row["5"]["message"].split("; ")[0] == REASON_CODES["invalid_money"]
    assert by_row["7"]["code"] == "short_record"
    assert by_row["7"]["Backer Number"] == "7" and by_row["7"]["Email"] == ""
    assert by_row["2"]["Notes"] == "'" + FORMULAS[0]
    assert by_row["4"]["Pledge Amount"] == "'=1+1"
    assert by_row["5"]["Notes"] == "'" + FORMULAS[5]
    for line in table:
        for cell in line:
            assert not cell.startswith(FORMULA_STARTS), cell
    assert result.rejected_rows == len(body)


# 100,000 rows are what it proves (the report streams); on four workers of a two-core machine at
# load 25 it took 300 s, the suite's default timeout.
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_report_of_100000_rejected_rows_is_complete_and_streamed(
    db: Engine, tmp_path: Path
) -> None:
    headers = HEADERS["no-reward"]
    path = tmp_path / "big.csv"
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(headers)
        for n in range(1, 100_001):
            writer.writerow(
                [
                    n,
                    10**9 + n,
                    f"Backer {n}",
                    "",
                    "$5.00",
                    "2020/01/01, 10:00",
                    "collected",
                    "=1+1",
                    "",
                    "US",
                ]
            )
    upload_id = stage_file(path, shop="shop.example.com", project="Big", chunk_size=5000)
    for chunk_id in start_upload(upload_id).chunk_ids:
        process_chunk(chunk_id)
    result = aggregate_upload(upload_id)
    # Nothing imported: the upload failed, and its report is what the user acts on.
    assert (result.status, result.imported_rows, result.rejected_rows) == ("FAILED", 0, 100_000)
    assert (result.errors or {})["error"]["code"] == "all_rows_rejected"
    out = io.StringIO()

    tracemalloc.start()
    try:
        written = write_rejected_csv(upload_id, out)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert written == 100_000
    out.seek(0)
    reader = csv.reader(out)
    assert next(reader)[: len(REPORT_COLUMNS)] == list(REPORT_COLUMNS)
    numbers = [int(line[0]) for line in reader]
    assert numbers == list(range(1, 100_001))
    # The upload's chunks held in memory at once take over 100 MB; the report holds one
    # 5,000-row chunk (the StringIO it writes to is not traced: it grows in C).
    assert peak < 40_000_000, peak
