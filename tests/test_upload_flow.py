"""The upload flow against the real PostgreSQL, through Prefect's test harness."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from flows.process_upload import process_upload
from pledgeflow.uploads import read_upload
from pledgeflow_bench.exports import TIERS, Backer, backers, render
from tests.helpers import (
    checksums,
    count,
    fetch_pairs,
    import_path,
    store_web_app_upload,
    write_file,
)

pytestmark = pytest.mark.usefixtures("prefect_harness", "write_path")

VARIANTS = ["2013", "2014", "2017", "2020", "2024", "no-reward"]


def inventory_of(conn: Connection, pledge_key: str) -> dict[str, int]:
    """The inventory lines of one pledge: product name → quantity."""
    rows = conn.execute(
        text(
            "SELECT pr.name, quantity FROM inventory i JOIN survey s ON s.id = i.survey_id "
            "JOIN pledge p ON p.id = s.pledge_id JOIN product pr ON pr.id = i.product_id "
            "WHERE p.pledge_id = :key"
        ),
        {"key": pledge_key},
    )
    return {name: quantity for name, quantity in rows}


def expected_reward_products(variant: str, rows: list[Backer]) -> int:
    if variant == "no-reward":
        return 0
    return len({b.tier for b in rows if b.tier is not None})


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_kickstarter_variant_imports_exact_counts(
    db: Engine, tmp_path: Path, variant: str
) -> None:
    rows = backers(30, repeat_every=6)
    path = write_file(tmp_path, f"{variant}.csv", render(variant, rows, bom=True, crlf=True))

    result = import_path(path, chunk_size=8)

    assert result.status == "COMPLETED"
    assert result.platform == "kickstarter"
    assert (result.total_rows, result.imported_rows, result.rejected_rows) == (30, 30, 0)
    assert result.total_chunks == result.completed_chunks == 4
    emails = {b.email for b in rows}
    assert count(db, "SELECT count(*) FROM backer") == len(emails)
    assert count(db, "SELECT count(*) FROM pledge") == 30
    assert count(db, "SELECT count(*) FROM survey") == 30
    assert count(db, "SELECT count(*) FROM product WHERE kind = 'reward'") == (
        expected_reward_products(variant, rows)
    )
    tables = result.stats["tables"]  # type: ignore[index]
    assert tables["pledge"]["created"] == 30
    assert tables["backer"]["created"] == len(emails)


def test_reward_names_follow_the_layout(db: Engine, tmp_path: Path) -> None:
    rows = backers(9)
    for variant, expected in [
        ("2017", {t[0] for t in TIERS}),
        ("2014", {f"Reward {t[1]}" for t in TIERS}),
        ("2013", {f"Reward {t[2]}.00 USD" for t in TIERS}),
    ]:
        path = write_file(tmp_path, f"{variant}.csv", render(variant, rows))
        import_path(path, project=f"names-{variant}")
        with db.connect() as conn:
            names = set(
                conn.execute(
                    text(
                        "SELECT p.name FROM product p JOIN project j ON j.id = p.project_id "
                        "WHERE j.name = :n AND kind = 'reward'"
                    ),
                    {"n": f"names-{variant}"},
                ).scalars()
            )
        assert names == expected, variant


def test_rejections_are_recorded_and_counted(db: Engine, tmp_path: Path) -> None:
    rows = backers(20)
    rows[2].email = "  "
    rows[4].pledge = "about ten dollars"
    rows[6].pledged_at = "last tuesday"
    rows[8].extra["Backer Number"] = ""
    rows[10].addons = (-1, 0)  # renders "-1" in a quantity column
    path = write_file(tmp_path, "bad.csv", render("2020", rows))

    result = import_path(path, chunk_size=6)

    assert result.status == "COMPLETED"
    assert result.total_rows == 20
    assert result.rejected_rows == 5
    assert result.imported_rows + result.rejected_rows == result.total_rows
    errors = result.errors or {}
    assert errors["by_code"] == {
        "invalid_date": 1,
        "invalid_money": 1,
        "invalid_quantity": 1,
        "missing_email": 1,
        "missing_key": 1,
    }
    sample = {(e["row"], e["code"], e["column"], e["value"]) for e in errors["sample"]}
    assert sample == {
        (3, "missing_email", "Email", "  "),
        (5, "invalid_money", "Pledge Amount", "about ten dollars"),
        (7, "invalid_date", "Pledged At", "last tuesday"),
        (9, "missing_key", "Backer Number", ""),
        (11, "invalid_quantity", "[Addon: 1001] Dice Tower", "-1"),
    }
    assert count(db, "SELECT count(*) FROM pledge") == 15


def test_short_record_is_rejected_with_its_row_number(db: Engine, tmp_path: Path) -> None:
    data = render("2014", backers(5)).decode().splitlines()
    data[3] = ",".join(data[3].split(",")[:4])  # data row 3 loses its tail
    path = write_file(tmp_path, "short.csv", ("\n".join(data) + "\n").encode())

    result = import_path(path)

    assert (result.imported_rows, result.rejected_rows) == (4, 1)
    entry = (result.errors or {})["sample"][0]
    assert (entry["row"], entry["code"], entry["column"]) == (3, "short_record", "Shipping Country")


def test_messy_csv_bom_crlf_quoted_newlines_and_comma_dates(db: Engine, tmp_path: Path) -> None:
    rows = backers(4)
    rows[1].notes = 'line one\r\nline two, "quoted"'
    rows[2].pledge = "SEK 1,000.00"
    rows[3].pledge = "£253.00"
    path = write_file(tmp_path, "messy.csv", render("2017", rows, bom=True, crlf=True))

    result = import_path(path)

    assert (result.imported_rows, result.rejected_rows) == (4, 0)
    with db.connect() as conn:
        notes = conn.execute(
            text(
                "SELECT answers->>'Notes' FROM survey s JOIN pledge p ON p.id = s.pledge_id "
                "WHERE p.pledge_id = '2'"
            )
        ).scalar()
        money: dict[str, str] = dict(
            conn.execute(
                text("SELECT pledge_id, amount::text || ' ' || currency FROM pledge")
            ).all()
        )
        pledged = conn.execute(
            text(
                "SELECT to_char(pledged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') "
                "FROM pledge WHERE pledge_id = '1'"
            )
        ).scalar()
    assert notes == 'line one\r\nline two, "quoted"'
    assert money["3"] == "1000.00 SEK"
    assert money["4"] == "253.00 GBP"
    assert pledged == "2020-04-24 05:37"


def test_unmapped_columns_land_in_survey_answers(db: Engine, tmp_path: Path) -> None:
    rows = backers(2)
    rows[0].notes = "gift wrap please"
    path = write_file(tmp_path, "answers.csv", render("2017", rows))

    import_path(path)

    with db.connect() as conn:
        answers = conn.execute(
            text(
                "SELECT answers FROM survey s JOIN pledge p ON p.id = s.pledge_id "
                "WHERE p.pledge_id = '1'"
            )
        ).scalar()
    assert answers == {
        "Notes": "gift wrap please",
        "Billing Country": "US",
        "What Is Your Region/Continent?": "North America",
    }


def test_dropped_and_errored_pledges_import_with_their_status(db: Engine, tmp_path: Path) -> None:
    rows = backers(4)
    rows[1].status = "dropped"
    rows[2].status = "errored"
    path = write_file(tmp_path, "status.csv", render("2020", rows))

    result = import_path(path)

    assert result.rejected_rows == 0
    statuses = fetch_pairs(db, "SELECT pledge_id, status FROM pledge")
    assert statuses == {"1": "collected", "2": "dropped", "3": "errored", "4": "collected"}


def test_later_row_wins_across_chunks_whatever_the_commit_order(db: Engine, tmp_path: Path) -> None:
    rows = backers(12)
    late = Backer(1, "backer1@example.com", "Renamed", tier=2, pledge="$500.00 USD", addons=(0, 1))
    rows.append(late)  # data row 13 repeats pledge 1 in the last chunk
    path = write_file(tmp_path, "repeat.csv", render("2020", rows))

    first = import_path(path, chunk_size=4)
    # The same file again, chunks in reverse commit order: the earlier row must not win.
    from pledgeflow.chunks import process_chunk
    from pledgeflow.staging import stage_file
    from pledgeflow.uploads import aggregate_upload, start_upload

    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=4)
    plan = start_upload(upload_id)
    for chunk_id in reversed(plan.chunk_ids):
        process_chunk(chunk_id)
    second = aggregate_upload(upload_id)

    assert first.status == second.status == "COMPLETED"
    with db.connect() as conn:
        pledge = conn.execute(
            text(
                "SELECT amount::text, b.name, pr.name FROM pledge p "
                "JOIN backer b ON b.id = p.backer_id JOIN product pr ON pr.id = p.product_id "
                "WHERE pledge_id = '1'"
            )
        ).one()
        lines = inventory_of(conn, "1")
    assert tuple(pledge) == ("500.00", "Renamed", TIERS[2][0])
    assert lines == {"Sleeves": 1}
    assert (second.stats or {})["tables"]["pledge"]["created"] == 0


def test_importing_the_same_file_twice_changes_nothing(db: Engine, tmp_path: Path) -> None:
    rows = backers(40, repeat_every=5)
    rows[3].email = ""
    path = write_file(tmp_path, "twice.csv", render("2024", rows, bom=True))

    first = import_path(path, chunk_size=9)
    before = checksums(db)
    second = import_path(path, chunk_size=9)
    after = checksums(db)

    assert after == before
    assert first.status == second.status == "COMPLETED"
    tables = (second.stats or {})["tables"]
    assert all(t["created"] == 0 and t["deleted"] == 0 for t in tables.values()), tables
    for table in ("product", "pledge", "survey", "inventory"):
        assert tables[table]["updated"] == 0, tables
    assert tables["pledge"]["unchanged"] == 39
    # backer9 is also the email of row 10, in the next chunk, with another name: when the
    # chunk holding row 9 commits first it briefly writes row 9's name (an update) and row 10
    # puts the latest name back (another). The final content is unchanged either way, and the
    # backer, one row, counts once.
    assert tables["backer"]["updated"] in (0, 1)


def test_reimport_replaces_inventory_so_dropped_addons_disappear(
    db: Engine, tmp_path: Path
) -> None:
    rows = backers(3)
    rows[0].addons = (2, 1)
    rows[0].items = (0, 0)
    import_path(write_file(tmp_path, "v1.csv", render("2020", rows)))
    rows[0].addons = (2, 0)
    second = import_path(write_file(tmp_path, "v2.csv", render("2020", rows)))

    with db.connect() as conn:
        lines = inventory_of(conn, "1")
    assert lines == {"Dice Tower": 2}
    assert (second.stats or {})["tables"]["inventory"]["deleted"] == 1


def _parsed(rows: int) -> list[list[str]]:
    import csv

    return list(csv.reader(render("2017", backers(rows)).decode().splitlines()))


def test_upload_written_by_the_web_app_is_processed_by_id_alone(db: Engine) -> None:
    parsed = _parsed(5)
    upload_id = store_web_app_upload(db, parsed[0], [parsed[1:4], parsed[4:6]])

    process_upload(upload_id, return_state=True)
    result = read_upload(upload_id)

    assert result.status == "COMPLETED"
    assert (result.total_rows, result.imported_rows, result.total_chunks) == (5, 5, 2)
    assert result.platform == "kickstarter"
    assert count(db, "SELECT count(*) FROM pledge WHERE upload_id = :u", u=upload_id) == 5


def test_a_web_app_chunk_with_json_numbers_and_nulls_keeps_every_digit(db: Engine) -> None:
    parsed = _parsed(2)
    headers = parsed[0]
    rows: list[list[object]] = [list(r) for r in parsed[1:]]
    # A web app may send numbers as JSON numbers, one too large for 64 bits, and blanks as null.
    rows[0][headers.index("Backer Number")] = 123456789012345678901234567890
    rows[1][headers.index("Backer Number")] = 7
    rows[1][headers.index("Notes")] = None
    upload_id = store_web_app_upload(db, headers, [rows])

    process_upload(upload_id, return_state=True)

    assert read_upload(upload_id).status == "COMPLETED"
    with db.connect() as conn:
        keys = set(conn.execute(text("SELECT pledge_id FROM pledge")).scalars())
    assert keys == {"123456789012345678901234567890", "7"}


def test_unknown_layout_fails_the_upload_and_writes_no_rows(db: Engine, tmp_path: Path) -> None:
    path = write_file(
        tmp_path,
        "unknown.csv",
        # "Pledge Status" (BackerKit's spelling) instead of "Pledged Status", no "Email".
        b"Backer Number,Backer UID,Backer Name,Email Address,Pledge Amount,Pledge Status\n"
        b"1,100,A,a@example.com,$1.00,collected\n",
    )

    result = import_path(path)

    assert result.status == "FAILED"
    error = (result.errors or {})["error"]
    assert error["code"] == "unknown_layout"
    assert error["closest_platform"] == "kickstarter"
    assert error["missing_headers"] == ["Email", "Pledged Status"]
    for table in ("backer", "product", "pledge", "survey", "inventory"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0
