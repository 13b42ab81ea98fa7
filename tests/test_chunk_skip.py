"""A chunk an earlier completed import of the project wrote alike completes without writing;
never when what is stored may differ from what it would write.

PostgreSQL gives each row version its own `xmin`, so comparing them shows every row written.
The imports run the plain functions the flow's tasks wrap (`run_plain`), without Redis, so no
row cache is involved.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.chunk_digest import chunk_digest, chunk_inputs
from pledgeflow.staging import stage_file
from pledgeflow.status import UploadResult
from tests.exports_backerkit import Backer
from tests.exports_backerkit_tiers import export, older_export
from tests.helpers import OTHER_ROW_INPUTS, ROW_INPUTS, configured, run_plain, write_file
from tests.test_unchanged_rows import contents, row_versions

SHOP = "shop.example.com"


def imported(
    path: Path, *, shop: str = SHOP, project: str = "Campaign", chunk_size: int = 7
) -> UploadResult:
    upload_id = stage_file(path, shop=shop, project=project, chunk_size=chunk_size, currency="USD")
    result = run_plain(upload_id)
    assert result.status == "COMPLETED"
    return result


def skipped_from(db: Engine, upload_id: int) -> dict[int, int | None]:
    """Per chunk index, the upload whose chunk it matched, or None where it wrote its rows."""
    with db.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT chunk_index, stats FROM csv_upload_chunk WHERE upload_id = :u "
                "ORDER BY chunk_index"
            ),
            {"u": upload_id},
        ).all()
    return {
        index: ((stats or {}).get("unchanged_since") or {}).get("upload_id")
        for index, stats in rows
    }


@contextmanager
def skipping(on: bool) -> Iterator[None]:
    with configured(skip_unchanged_chunks="1" if on else "0"):
        yield


def with_bad_and_repeated(rows: list[Backer]) -> list[Backer]:
    """The export with a row to reject and an email repeated in a later chunk."""
    out = copy.deepcopy(rows)
    out[2].email = ""  # missing_email
    again = copy.deepcopy(out[4])  # the same person, a second pledge, another name
    again.id, again.name = 900, "Second Pledge Name"
    return [*out, again]


def test_an_unchanged_file_writes_nothing_and_counts_as_a_full_reimport(
    db: Engine, tmp_path: Path
) -> None:
    path = write_file(tmp_path, "f.csv", export(with_bad_and_repeated(older_export())))
    first = imported(path)
    with skipping(False):
        mapped = imported(path)  # every chunk mapped and written: nothing changed
    assert set(skipped_from(db, mapped.upload_id).values()) == {None}
    before = row_versions(db)

    again = imported(path)

    assert row_versions(db) == before
    assert set(skipped_from(db, again.upload_id).values()) == {mapped.upload_id}
    stats, reference = again.stats or {}, mapped.stats or {}
    assert stats["tables"] == reference["tables"]
    for table, counts in stats["tables"].items():
        assert (counts["created"], counts["updated"], counts["deleted"]) == (0, 0, 0), table
        assert counts["unchanged"] == (first.stats or {})["tables"][table]["created"], table
    assert (again.imported_rows, again.rejected_rows) == (mapped.imported_rows, 1)
    assert again.errors == mapped.errors
    assert stats["warnings"] == reference["warnings"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT upload_id FROM pledge")).scalars().all() == [
            first.upload_id
        ]


def test_a_different_upload_in_between_stops_the_skip_of_the_chunks_it_changed(
    db: Engine, tmp_path: Path
) -> None:
    rows = older_export()
    changed = copy.deepcopy(rows)
    changed[9].name = "Renamed In Between"  # data row 10: the second chunk of 7 rows
    original = write_file(tmp_path, "f.csv", export(rows))
    imported(original)
    between = imported(write_file(tmp_path, "g.csv", export(changed)))

    again = imported(original)

    imported(original, shop="alone.example.com")
    assert contents(db, SHOP) == contents(db, "alone.example.com")
    # The unchanged chunks match the upload in between; the changed one matches only the first
    # import, which the upload in between has written over since.
    assert skipped_from(db, again.upload_id) == {
        0: between.upload_id,
        1: None,
        2: between.upload_id,
        3: between.upload_id,
    }


def test_another_project_of_the_shop_writing_a_shared_backer_stops_the_skip(
    db: Engine, tmp_path: Path
) -> None:
    rows = older_export()
    other = copy.deepcopy(rows[3:4])
    other[0].name = "Named Elsewhere"
    original = write_file(tmp_path, "f.csv", export(rows))
    imported(original)
    imported(write_file(tmp_path, "h.csv", export(other)), project="Other Campaign")

    again = imported(original)

    with db.connect() as conn:
        name = conn.execute(
            text("SELECT name FROM backer WHERE shop = :s AND email = :e"),
            {"s": SHOP, "e": rows[3].email},
        ).scalar_one()
    assert name == rows[3].name
    assert set(skipped_from(db, again.upload_id).values()) == {None}


def test_a_chunk_settled_otherwise_is_written(db: Engine, tmp_path: Path) -> None:
    rows = older_export()
    longer = [*copy.deepcopy(rows), copy.deepcopy(rows[3])]
    longer[-1].id, longer[-1].name = 900, "Later Row Name"  # supersedes data row 4's backer
    imported(write_file(tmp_path, "longer.csv", export(longer)))

    shorter = imported(write_file(tmp_path, "f.csv", export(rows)))

    with db.connect() as conn:
        name = conn.execute(
            text("SELECT name FROM backer WHERE email = :e"), {"e": rows[3].email}
        ).scalar_one()
    assert name == rows[3].name
    # Chunk 0 holds the same data, but data row 4 is no longer superseded: it must be written.
    assert skipped_from(db, shorter.upload_id) == {0: None, 1: 1, 2: 1, 3: None}


def test_while_an_older_upload_runs_positions_move_forward_instead(
    db: Engine, tmp_path: Path
) -> None:
    path = write_file(tmp_path, "f.csv", export(older_export()))
    imported(path)
    running = stage_file(path, shop=SHOP, project="Campaign", chunk_size=7, currency="USD")
    with db.begin() as conn:
        conn.execute(
            text("UPDATE csv_upload SET status = 'PROCESSING' WHERE id = :u"), {"u": running}
        )

    again = imported(path)

    assert set(skipped_from(db, again.upload_id).values()) == {None}
    with db.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT upload_id FROM pledge")).scalars().all() == [
            again.upload_id
        ]


def test_the_digest_holds_every_input_the_rows_depend_on() -> None:
    inputs = ROW_INPUTS | {"dates": {}}
    variations = OTHER_ROW_INPUTS | {"dates": {"pledged_at": {"order": "DMY"}}}
    marks = {"pledge": [3], "backer": []}
    base = chunk_digest(chunk_inputs(**inputs), marks)
    assert base == chunk_digest(chunk_inputs(**inputs), {"backer": [], "pledge": [3]})
    digests = {
        chunk_digest(chunk_inputs(**(inputs | {name: value})), marks)
        for name, value in variations.items()
    }
    digests.add(chunk_digest(chunk_inputs(**inputs), {"pledge": [3], "backer": [5]}))
    digests.add(chunk_digest(chunk_inputs(**inputs), None))
    assert base not in digests
    assert len(digests) == len(variations) + 2
