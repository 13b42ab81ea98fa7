"""updated_at moves only when a row really changes: a re-import writes no row version and
moves no timestamp; a changed backer moves its own and nothing else's; a same-value UPDATE makes
a new row version but keeps the timestamp. Its trigger covers every column of every table."""

from __future__ import annotations

import copy
from datetime import datetime
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from pledgeflow.migrations.touch import NOT_COMPARED, trigger_name
from pledgeflow.staging import stage_file
from pledgeflow.status import UploadResult
from schemas.tables import DATA_TABLES, TABLES
from tests.exports_backerkit_tiers import export, newer_export
from tests.helpers import run_plain, write_file


def imported(path: Path) -> UploadResult:
    """Stage and process a file with the plain functions the flow's tasks wrap."""
    upload_id = stage_file(
        path, shop="touch.example.com", project="Touch", chunk_size=5, currency="USD"
    )
    return run_plain(upload_id)


def versions(engine: Engine) -> dict[str, dict[int, tuple[str, datetime]]]:
    """`{table: {id: (xmin, updated_at)}}` for every row of the five data tables."""
    with engine.connect() as conn:
        return {
            table: {
                r.id: (r.xmin, r.updated_at)
                for r in conn.execute(text(f"SELECT id, xmin::text, updated_at FROM {table}"))
            }
            for table in DATA_TABLES
        }


def test_every_table_has_updated_at_and_its_trigger_compares_every_other_column(
    db: Engine,
) -> None:
    inspector = inspect(db)
    with db.connect() as conn:
        for table in TABLES:
            columns = {c["name"]: c for c in inspector.get_columns(table)}
            assert "updated_at" in columns, table
            assert columns["updated_at"]["nullable"] is False, table
            definition = conn.execute(
                text(
                    "SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t "
                    "WHERE t.tgrelid = CAST(:t AS regclass) AND t.tgname = :n"
                ),
                {"t": table, "n": trigger_name(table)},
            ).scalar_one()
            compared = {
                name
                for name in columns
                if name not in NOT_COMPARED and f"{table}.{name}" not in NOT_COMPARED
            }
            # A migration that adds a column must recreate the trigger (create_touch_trigger).
            missing = {name for name in compared if f"old.{name}" not in definition.lower()}
            assert not missing, f"{table}'s trigger does not compare {missing}"


def test_a_reimport_moves_no_updated_at_and_a_change_moves_only_its_rows(
    db: Engine, tmp_path: Path, write_path: str
) -> None:
    rows = newer_export()
    path = write_file(tmp_path, "first.csv", export(rows))
    assert imported(path).status == "COMPLETED"
    first = versions(db)

    assert imported(path).status == "COMPLETED"
    assert versions(db) == first

    changed = copy.deepcopy(rows)
    changed[2].name = "A Changed Name"
    email = changed[2].email.strip().lower()
    path = write_file(tmp_path, "changed.csv", export(changed))
    assert imported(path).status == "COMPLETED"
    after = versions(db)
    with db.connect() as conn:
        backer_id, updated_at, upload_started = conn.execute(
            text(
                "SELECT b.id, b.updated_at, u.started_at FROM backer b "
                "JOIN csv_upload u ON u.id = b.source_upload_id WHERE b.email = :e"
            ),
            {"e": email},
        ).one()
        surveys = set(
            conn.execute(text("SELECT id FROM survey WHERE backer_id = :b"), {"b": backer_id})
            .scalars()
            .all()
        )
    assert after["backer"][backer_id][1] > first["backer"][backer_id][1]
    assert updated_at >= upload_started
    # The name is the backer's and its survey's shipping name; nothing else changed.
    expected = {"backer": {backer_id}, "survey": surveys}
    for table in DATA_TABLES:
        moved = {i for i, (_, stamp) in after[table].items() if stamp != first[table][i][1]}
        written = {i for i, (xmin, _) in after[table].items() if xmin != first[table][i][0]}
        assert moved == expected.get(table, set()), table
        assert moved <= written, table


def test_an_update_writing_the_same_values_keeps_updated_at(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "same.csv", export(newer_export()))
    upload_id = imported(path).upload_id
    query = text("SELECT xmin::text, updated_at, status FROM csv_upload WHERE id = :u")
    with db.connect() as conn:
        before = conn.execute(query, {"u": upload_id}).one()

    with db.begin() as conn:
        conn.execute(
            text("UPDATE csv_upload SET status = status, stats = stats WHERE id = :u"),
            {"u": upload_id},
        )
    with db.connect() as conn:
        same = conn.execute(query, {"u": upload_id}).one()
    assert same.xmin != before.xmin
    assert same.updated_at == before.updated_at

    with db.begin() as conn:
        now = conn.execute(text("SELECT now()")).scalar_one()
        conn.execute(
            text("UPDATE csv_upload SET rejected_rows = rejected_rows + 1 WHERE id = :u"),
            {"u": upload_id},
        )
    with db.connect() as conn:
        moved = conn.execute(query, {"u": upload_id}).one()
    # The transaction's time, to the microsecond PostgreSQL keeps.
    assert moved.updated_at == now
