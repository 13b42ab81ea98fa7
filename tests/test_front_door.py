"""Odd files and refused paths at staging, header-only files, re-detection on retry, and the
schema check, on the real PostgreSQL (and an SQLite file where that is the point)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from pledgeflow.schema_state import SchemaMissingError, require_schema
from pledgeflow.staging import StagingError, stage_file
from pledgeflow.uploads import start_upload
from pledgeflow_bench.exports import HEADERS, backers, render
from tests.conftest import use_database
from tests.helpers import configure, count, run_plain, write_file

TABLES = ("project", "csv_upload", "csv_upload_chunk", "backer", "product", "pledge")


def stage(path: Path, *, platform: str | None = None, root_required: bool = False) -> int:
    return stage_file(
        path,
        shop="shop.example.com",
        project="Campaign",
        chunk_size=4,
        platform=platform,
        root_required=root_required,
    )


def stored(db: Engine) -> dict[str, int]:
    return {table: count(db, f"SELECT count(*) FROM {table}") for table in TABLES}


NOTHING = dict.fromkeys(TABLES, 0)


def test_a_file_ending_inside_a_quoted_field_names_where_and_stores_nothing(
    db: Engine, tmp_path: Path
) -> None:
    lines = render("2020", backers(9)).decode().splitlines(keepends=True)
    assert len(lines) == 10  # no record spans lines: data row n is on line n + 1
    # An upload cut short inside data row 7, whose second cell opens a quote.
    cut = "".join(lines[:7]) + '7,"an interrupted value, with a comma\nand a second line'
    path = write_file(tmp_path, "cut.csv", cut.encode())

    with pytest.raises(StagingError) as refused:
        stage(path)

    assert refused.value.code == "truncated_file"
    assert "opens on line 8 (data row 7)" in str(refused.value)
    assert "looks truncated" in str(refused.value)
    assert stored(db) == NOTHING


def test_a_header_only_file_completes_with_no_rows_and_creates_nothing(
    db: Engine, tmp_path: Path
) -> None:
    path = write_file(tmp_path, "header.csv", (",".join(HEADERS["2020"]) + "\n").encode())

    result = run_plain(stage(path))

    assert (result.status, result.total_rows, result.imported_rows) == ("COMPLETED", 0, 0)
    assert {t: n for t, n in stored(db).items() if t not in ("project", "csv_upload")} == {
        "csv_upload_chunk": 1,
        "backer": 0,
        "product": 0,
        "pledge": 0,
    }


def test_a_retry_detects_the_platform_again_instead_of_calling_it_forced(
    db: Engine, tmp_path: Path
) -> None:
    detected = run_plain(stage(write_file(tmp_path, "a.csv", render("2020", backers(3)))))
    forced = run_plain(
        stage(write_file(tmp_path, "b.csv", render("2020", backers(3))), platform="kickstarter")
    )

    again = start_upload(detected.upload_id)
    forced_again = start_upload(forced.upload_id)

    assert (detected.stats or {})["detection"]["signature"] != "forced by caller"
    assert (
        again.detection is not None
        and again.detection["signature"] == ((detected.stats or {})["detection"]["signature"])
    )
    assert forced_again.detection is not None
    assert forced_again.detection["signature"] == "forced by caller"


def test_an_import_root_refuses_a_file_outside_it_before_reading_it(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "imports"
    root.mkdir()
    secret = write_file(tmp_path, "secret.csv", render("2020", backers(2)))
    (root / "link.csv").symlink_to(secret)
    configure(monkeypatch, import_root=str(root))
    for path in (secret, root / "link.csv", Path("/etc/passwd"), root / ".." / "secret.csv"):
        with pytest.raises(StagingError) as refused:
            stage(path, root_required=True)
        assert refused.value.code == "outside_import_root"
    configure(monkeypatch, import_root=None)
    with pytest.raises(StagingError) as unset:
        stage(secret, root_required=True)
    assert unset.value.code == "import_root_required"
    assert stored(db) == NOTHING


@pytest.fixture
def missing_sqlite(tmp_path: Path, pg_url: str) -> Iterator[Path]:
    path = tmp_path / "pledgeflow.db"
    use_database(f"sqlite:///{path}")
    yield path
    use_database(pg_url)


def test_a_missing_sqlite_database_is_refused_without_creating_it(missing_sqlite: Path) -> None:
    with pytest.raises(SchemaMissingError) as refused:
        require_schema(create=False)

    assert "no pledgeflow database at" in str(refused.value)
    assert not missing_sqlite.exists()

    require_schema(create=True)
    assert missing_sqlite.stat().st_size > 0
    require_schema(create=False)  # the current schema passes
