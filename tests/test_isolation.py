"""An upload of one shop never reads or writes another shop's data; payloads stay inert data."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import cast

import pytest
from fastapi.testclient import TestClient
from prefect.deployments.runner import RunnerDeployment
from sqlalchemy import text
from sqlalchemy.engine import Engine

from deployments.webhook import create_app
from flows.process_upload import process_upload
from pledgeflow.reports import write_rejected_csv
from pledgeflow.staging import stage_file
from pledgeflow.summaries import chunk_outcomes, summary_markdown
from pledgeflow_bench.exports import backers, render
from schemas.kickstarter import BACKER, PLEDGED
from tests.helpers import (
    checksums,
    configure,
    count,
    deliver,
    fetch_rows,
    run_plain,
    stage_export,
    store_web_app_upload,
    write_file,
)


def shop_rows(db: Engine, shop: str) -> list[tuple[object, ...]]:
    return fetch_rows(
        db,
        "SELECT b.email, b.name, p.pledge_id, p.amount, j.name FROM backer b "
        "JOIN pledge p ON p.backer_id = b.id JOIN project j ON j.id = p.project_id "
        "WHERE b.shop = :s ORDER BY p.pledge_id",
        s=shop,
    )


def test_an_upload_never_touches_another_shops_backers_or_pledges(
    db: Engine, tmp_path: Path
) -> None:
    people = backers(8)
    run_plain(stage_export(tmp_path, "b.csv", people, shop="b.example.com", project="Same Name"))
    before = shop_rows(db, "b.example.com")
    for person in people:  # the same emails and pledge numbers, other details
        person.name = "Somebody Else"
        person.pledge = "$999.00 USD"

    result = run_plain(
        stage_export(tmp_path, "a.csv", people, shop="a.example.com", project="Same Name")
    )

    assert result.status == "COMPLETED"
    assert shop_rows(db, "b.example.com") == before
    assert {r[1] for r in shop_rows(db, "a.example.com")} == {"Somebody Else"}
    assert count(db, "SELECT count(*) FROM backer") == 16
    assert count(db, "SELECT count(*) FROM project") == 2


def test_an_upload_naming_another_shops_project_is_refused(db: Engine, tmp_path: Path) -> None:
    run_plain(
        stage_export(tmp_path, "b.csv", backers(4), shop="b.example.com", project="B's campaign")
    )
    before = checksums(db)
    rows = [r for r in csv.reader(io.StringIO(render("2020", backers(4)).decode()))]
    with db.connect() as conn:
        victim = conn.execute(
            text("SELECT id FROM project WHERE shop = 'b.example.com'")
        ).scalar_one()
    upload_id = store_web_app_upload(
        db, rows[0], [rows[1:]], shop="a.example.com", filename="sneaky.csv", project_id=victim
    )

    result = run_plain(upload_id)

    assert result.status == "FAILED"
    assert (result.errors or {})["error"]["code"] == "shop_mismatch"
    assert checksums(db) == before


@pytest.mark.usefixtures("prefect_harness")
def test_a_webhook_naming_a_shop_cannot_start_another_shops_upload(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, webhook_secret="isolation-secret")
    upload_id = stage_export(tmp_path, "b.csv", backers(2), shop="b.example.com", project="B")
    cast(RunnerDeployment, process_upload.to_deployment(name="process-upload")).apply()
    client = TestClient(create_app())

    def post(shop: str) -> int:
        answer = deliver(client, "isolation-secret", {"upload_id": upload_id, "shop": shop})
        return int(answer.status_code)

    assert post("a.example.com") == 404
    with db.connect() as conn:
        assert (
            conn.execute(
                text("SELECT flow_run_id FROM csv_upload WHERE id = :u"), {"u": upload_id}
            ).scalar()
            is None
        )
    assert post("b.example.com") == 202


PAYLOADS = [
    "'); DROP TABLE backer; --",
    "<script>alert('x')</script>",
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "Robert'); DELETE FROM pledge WHERE ('1'='1",
]


def test_sql_html_and_formula_payloads_are_stored_verbatim_and_rendered_inert(
    db: Engine, tmp_path: Path
) -> None:
    headers = [*BACKER, *PLEDGED, "Pledged Status", "Notes", *PAYLOADS]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(headers)
    for n, payload in enumerate(PAYLOADS, 1):
        writer.writerow(
            [
                n,
                1000 + n,
                payload,
                f"p{n}@example.com",
                "$5.00 USD",
                "2020/01/01, 00:00",
                "collected",
                payload,
                *PAYLOADS,
            ]
        )
    writer.writerow(
        [
            99,
            1099,
            "x",
            "not-an-email " + PAYLOADS[1],
            "$5.00 USD",
            "2020/01/01, 00:00",
            "collected",
            PAYLOADS[2],
            *PAYLOADS,
        ]
    )
    path = write_file(tmp_path, "payloads.csv", out.getvalue().encode())

    result = run_plain(stage_file(path, shop="shop.example.com", project="P"))

    assert (result.imported_rows, result.rejected_rows) == (5, 1)
    assert count(db, "SELECT count(*) FROM backer") == 5  # the tables are all still there
    with db.connect() as conn:
        names = [r[0] for r in conn.execute(text("SELECT name FROM backer ORDER BY email"))]
        answers = conn.execute(
            text(
                "SELECT s.answers FROM survey s JOIN pledge p ON p.id = s.pledge_id "
                "WHERE p.pledge_id = '2'"
            )
        ).scalar_one()
    assert names == PAYLOADS
    assert answers == {"Notes": PAYLOADS[1], **{p: p for p in PAYLOADS}}

    summary = summary_markdown(result, chunk_outcomes(result.upload_id))
    assert "<script>" not in summary
    report = io.StringIO()
    assert write_rejected_csv(result.upload_id, report) == 1
    cells = [c for row in csv.reader(io.StringIO(report.getvalue())) for c in row]
    assert "not-an-email " + PAYLOADS[1] in cells  # kept verbatim: it is plain text in CSV
    assert "'" + PAYLOADS[2] in cells  # a formula is neutralised, its text kept
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
