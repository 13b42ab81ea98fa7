"""The writers' rules hold on both dialects: PostgreSQL (rows staged by COPY) and SQLite.

One write path (`pledgeflow.writers`) serves both; only loading the stages differs. Each test
stages the same files on each database, processes the same chunks in the same order, and
compares every table (with the source positions) and every chunk's counts: the same rules must
leave the same rows and report the same counts. An oracle computed from the generated rows
checks that those rows are the ones the rules demand: the latest position wins, whatever order
chunks and uploads are processed in.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from pledgeflow.chunks import process_chunk, write_frames
from pledgeflow.database import get_engine
from pledgeflow.staging import stage_file
from pledgeflow.transform import ChunkFrames, build_frames
from pledgeflow.uploads import aggregate_upload, start_upload
from pledgeflow.writers import WriteTarget, write_chunk
from pledgeflow.writers.stages import STAGE_PRODUCT, copy_rows, prepare_stages
from pledgeflow_bench.exports import HEADERS, TIERS, Backer, backers, render
from pledgeflow_bench.web_app import insert_web_app_upload, web_app_project
from schemas.platforms import resolve_layout
from tests.conftest import DATA_TABLES, use_database
from tests.helpers import configure, stage_export, write_file

SHOP, PROJECT = "shop.example.com", "Campaign"
# How PostgreSQL can load the stages: COPY (its default), or the executemany SQLite uses.
PATHS = ("portable", "auto")

# Business content plus the positions the rules keep, so a rule that wrote the right values
# from the wrong row would show.
STATE = {
    "backer": """SELECT email, name, phone, country, external_id, source_upload_id, source_row
                 FROM backer""",
    "product": "SELECT name, kind, external_id, price, currency FROM product",
    "pledge": """SELECT pl.pledge_id, b.email, pr.name, amount, shipping_amount, pl.currency,
                        status, pledged_at, platform, upload_id, pl.source_row
                 FROM pledge pl JOIN backer b ON b.id = pl.backer_id
                 LEFT JOIN product pr ON pr.id = pl.product_id""",
    "survey": """SELECT pl.pledge_id, b.email, responded_at, shipping_name, shipping_address_1,
                        shipping_address_2, shipping_city, shipping_state, shipping_postal_code,
                        shipping_country_name, shipping_country_code, shipping_phone,
                        delivery_notes, CAST(answers AS TEXT) AS answers
                 FROM survey s JOIN pledge pl ON pl.id = s.pledge_id
                 JOIN backer b ON b.id = s.backer_id""",
    "inventory": """SELECT pl.pledge_id, pr.name, quantity FROM inventory i
                    JOIN survey s ON s.id = i.survey_id JOIN pledge pl ON pl.id = s.pledge_id
                    JOIN product pr ON pr.id = i.product_id""",
    "chunk": """SELECT upload_id, chunk_index, status, imported_rows, rejected_rows,
                       CAST(stats->'tables' AS TEXT) AS tables, CAST(errors AS TEXT) AS errors
                FROM csv_upload_chunk""",
}
# Columns each dialect returns in its own form (JSON text, money, timestamps), compared by value.
JSON_COLUMNS = {"answers", "tables", "errors"}
MONEY_COLUMNS = {"amount", "shipping_amount", "price"}
TIMESTAMP_COLUMNS = {"pledged_at", "responded_at"}


def plain(column: str, value: Any) -> Any:
    """A value as both dialects can be compared on: PostgreSQL returns JSON text with its own
    spacing, numerics and aware timestamps; SQLite minified JSON, numbers and naive text."""
    if value is None:
        return None
    if column in JSON_COLUMNS:
        return json.dumps(json.loads(value), sort_keys=True)
    if column in MONEY_COLUMNS:
        return Decimal(str(value)).quantize(Decimal("0.01"))
    if column in TIMESTAMP_COLUMNS:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
        return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return value


def read_state(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every table of `STATE`, each row's values in comparable form, rows in a stable order."""
    tables = {}
    with engine.connect() as conn:
        for name, sql in STATE.items():
            result = conn.execute(text(sql))
            columns = list(result.keys())
            rows = (tuple(plain(c, v) for c, v in zip(columns, r, strict=True)) for r in result)
            tables[name] = sorted(rows, key=repr)
    return tables


@dataclass
class Outcome:
    """What one path left behind: every table, and each upload's aggregated counts."""

    tables: dict[str, list[tuple[Any, ...]]]
    uploads: list[dict[str, Any]]


Order = Callable[[list[int]], list[int]]


DIALECTS = ("sqlite", "postgresql")


def on_database(url: str) -> Engine:
    """Point pledgeflow at `url`, closing the connections of the database it leaves."""
    get_engine().dispose()
    use_database(url)
    return get_engine()


@pytest.fixture
def databases(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Each dialect's database: a migrated SQLite file beside the run's PostgreSQL database.
    PostgreSQL and its default loader (COPY) are restored after the test."""
    from pledgeflow.migrations.runner import upgrade

    sqlite_url = f"sqlite:///{tmp_path / 'rules.db'}"
    on_database(sqlite_url)
    upgrade()
    configure(monkeypatch, write_path="auto")
    yield {"sqlite": sqlite_url, "postgresql": pg_url}
    on_database(pg_url)


def empty_tables(engine: Engine) -> None:
    """Delete every row the tests write, numbering ids from 1 again."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))
        else:  # a rowid table numbers new rows past its largest id: from 1 once empty
            for table in DATA_TABLES.split(", "):
                conn.execute(text(f"DELETE FROM {table}"))


def run_on(
    url: str,
    tmp_path: Path,
    files: list[bytes],
    chunk_size: int,
    order: Order,
) -> Outcome:
    """On the database at `url`: empty the tables, stage every file, then process all their
    chunks in `order`."""
    engine = on_database(url)
    empty_tables(engine)
    upload_ids = [
        stage_file(
            write_file(tmp_path, f"upload-{n}.csv", data),
            shop=SHOP,
            project=PROJECT,
            chunk_size=chunk_size,
        )
        for n, data in enumerate(files)
    ]
    chunk_ids = [c for u in upload_ids for c in start_upload(u).chunk_ids]
    for chunk_id in order(chunk_ids):
        process_chunk(chunk_id)
    results = [aggregate_upload(u) for u in upload_ids]
    return Outcome(
        tables=read_state(engine),
        uploads=[
            {
                "status": r.status,
                "imported": r.imported_rows,
                "rejected": r.rejected_rows,
                "tables": (r.stats or {}).get("tables"),
            }
            for r in results
        ],
    )


def both_dialects(
    databases: dict[str, str], tmp_path: Path, files: list[bytes], chunk_size: int, order: Order
) -> Outcome:
    """Run the files on SQLite and on PostgreSQL; assert they agree and return the outcome."""
    on_sqlite, on_postgresql = (
        run_on(databases[name], tmp_path, files, chunk_size, order) for name in DIALECTS
    )
    for name in STATE:
        assert on_postgresql.tables[name] == on_sqlite.tables[name], name
    assert on_postgresql.uploads == on_sqlite.uploads
    return on_postgresql


def forward(ids: list[int]) -> list[int]:
    return ids


def backward(ids: list[int]) -> list[int]:
    return ids[::-1]


def shuffled(seed: int) -> Order:
    def order(ids: list[int]) -> list[int]:
        out = list(ids)
        random.Random(seed).shuffle(out)
        return out

    return order


def pledge_key(b: Backer) -> str:
    return b.extra.get("Backer Number", str(b.number)).strip()


def expected(files: list[list[Backer]]) -> dict[str, dict[str, Any]]:
    """The latest valid row per pledge key and per email decides, in (upload, row) order."""
    pledges: dict[str, Any] = {}
    names: dict[str, str] = {}
    lines: dict[str, dict[str, int]] = {}
    for rows in files:
        for b in rows:
            email = b.email.strip().lower()
            if not email or not pledge_key(b):
                continue
            key = pledge_key(b)
            tier = TIERS[b.tier][0] if b.tier is not None else None
            pledges[key] = (email, b.status, tier)
            names[email] = b.name
            owed = {
                "Dice Tower": max(b.addons[0], b.items[0]),
                "Sleeves": b.addons[1],
                "Wooden Insert": b.items[1],
            }
            lines[key] = {name: q for name, q in owed.items() if q > 0}
    return {"pledges": pledges, "names": names, "lines": lines}


def assert_latest_rows_won(outcome: Outcome, files: list[list[Backer]]) -> None:
    want = expected(files)
    pledges = {r[0]: (r[1], r[6], r[2]) for r in outcome.tables["pledge"]}
    names = {r[0]: r[1] for r in outcome.tables["backer"]}
    lines: dict[str, dict[str, int]] = {key: {} for key in pledges}
    for key, product, quantity in outcome.tables["inventory"]:
        lines[key][product] = quantity
    assert pledges == want["pledges"]
    assert names == want["names"]
    assert lines == want["lines"]


def changed_copy(rows: list[Backer]) -> list[Backer]:
    """The same backers a while later: renamed, re-tiered, add-ons dropped, one pledge moved to
    another email, one pledge gone from the file, two new ones."""
    later = copy.deepcopy(rows)
    later[0].name = "Renamed"
    later[1].tier = 2 if later[1].tier != 2 else 0
    later[2].addons = (0, 0)
    later[2].items = (0, 0)
    later[3].status = "dropped"
    later[4].survey_at = "2021/01/02, 03:04"
    later[4].address = "9 Elm St"
    later[5].email = "moved@example.com"
    del later[6]
    later += backers(2, seed=11)[:2]
    later[-1].number, later[-2].number = 901, 902
    return later


SCENARIOS: dict[str, tuple[list[list[Backer]], int, Order]] = {
    "one-file-repeats-reverse-commit": ([backers(23, repeat_every=4)], 4, backward),
    "reimport-unchanged": ([backers(17, repeat_every=3)] * 2, 5, forward),
    "reimport-changed": (
        [backers(15, repeat_every=5), changed_copy(backers(15, repeat_every=5))],
        4,
        forward,
    ),
    "newer-upload-processed-first": (
        [backers(15, repeat_every=5), changed_copy(backers(15, repeat_every=5))],
        4,
        backward,
    ),
    "uploads-interleaved": (
        [backers(15, repeat_every=5), changed_copy(backers(15, repeat_every=5))],
        3,
        shuffled(5),
    ),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_both_dialects_agree_and_latest_rows_win(
    databases: dict[str, str], tmp_path: Path, scenario: str
) -> None:
    files, chunk_size, order = SCENARIOS[scenario]

    outcome = both_dialects(
        databases, tmp_path, [render("2020", f) for f in files], chunk_size, order
    )

    assert all(u["status"] == "COMPLETED" for u in outcome.uploads)
    assert_latest_rows_won(outcome, files)


def test_reimport_of_an_unchanged_file_counts_every_row_unchanged(
    databases: dict[str, str], tmp_path: Path
) -> None:
    rows = backers(17, repeat_every=3)
    for b in rows:  # a repeated email is the same person, with the same details
        b.name = b.email.split("@")[0]
        b.extra["Backer UID"] = b.name

    outcome = both_dialects(databases, tmp_path, [render("2020", rows)] * 2, 5, forward)

    second = outcome.uploads[1]["tables"]
    assert {t: (c["created"], c["updated"], c["deleted"]) for t, c in second.items()} == {
        t: (0, 0, 0) for t in second
    }
    assert second["pledge"]["unchanged"] == 17
    # Unchanged rows are not written: they still name the upload that last changed them.
    assert {r[9] for r in outcome.tables["pledge"]} == {1}
    assert {r[5] for r in outcome.tables["backer"]} == {1}


@pytest.mark.parametrize("variant", ["2013", "2014", "2017", "2024", "no-reward"])
def test_both_dialects_agree_on_every_variant(
    databases: dict[str, str], tmp_path: Path, variant: str
) -> None:
    rows = backers(19, repeat_every=4)
    rows[2].email = ""
    rows[5].pledge = "about ten dollars"
    rows[7].notes = "gift wrap, please"

    outcome = both_dialects(databases, tmp_path, [render(variant, rows, bom=True)], 4, backward)

    assert outcome.uploads[0]["rejected"] == 2


people = st.builds(
    Backer,
    number=st.integers(1, 7),
    email=st.sampled_from(["a@example.com", "B@example.com", " b@example.com", "c@example.com"]),
    name=st.sampled_from(["Ann", "Bob", "Cy"]),
    tier=st.sampled_from([None, 0, 1, 2]),
    status=st.sampled_from(["collected", "dropped"]),
    survey_at=st.sampled_from(["", "2021/01/02, 03:04"]),
    addons=st.tuples(st.integers(0, 2), st.integers(0, 1)),
    items=st.tuples(st.integers(0, 1), st.integers(0, 2)),
    address=st.sampled_from(["1 Main St", "2 Side St"]),
)


@pytest.mark.slow  # tens of imports: scheduled early (tests/conftest.py)
@pytest.mark.timeout(900)  # ~1 minute idle; six times that on two busy cores
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    files=st.lists(st.lists(people, min_size=1, max_size=12), min_size=1, max_size=3),
    chunk_size=st.integers(1, 5),
    seed=st.integers(0, 1000),
)
def test_both_dialects_agree_on_random_uploads_in_random_order(
    databases: dict[str, str],
    tmp_path: Path,
    files: list[list[Backer]],
    chunk_size: int,
    seed: int,
) -> None:
    outcome = both_dialects(
        databases,
        tmp_path,
        [render("2020", f) for f in files],
        chunk_size,
        shuffled(seed),
    )

    assert_latest_rows_won(outcome, files)


@pytest.fixture
def restore_write_path(db: Engine) -> Engine:
    """The PostgreSQL database; the loader a test chooses (`configure`, on its monkeypatch) is
    undone after the test, back to the default (COPY)."""
    return db


def three_backers(conn: Connection) -> tuple[WriteTarget, ChunkFrames]:
    """A project and an upload for it, and the frames of a three-backer Kickstarter file."""
    headers = HEADERS["2020"]
    rows = list(csv.reader(io.StringIO(render("2020", backers(3)).decode())))[1:]
    frames = build_frames(headers, rows, 1, resolve_layout(tuple(headers)), None)
    project = web_app_project(conn, SHOP, PROJECT)
    upload = insert_web_app_upload(conn, project, SHOP, "x.csv", headers, [])
    return WriteTarget(SHOP, project, upload, "kickstarter"), frames


@pytest.mark.parametrize("path", PATHS)
def test_postgres_loads_the_stages_the_way_the_settings_name(
    restore_write_path: Engine, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(monkeypatch, write_path=path)
    with restore_write_path.begin() as conn:
        target, frames = three_backers(conn)
        counts, copies = write_chunk(conn, target, frames, keep=True)
        staged = conn.execute(text("SELECT count(*) FROM pf_stage_pledge")).scalar()

    assert counts.tables["pledge"].created == 3
    assert staged == 3  # either way the same stages, then the same statements
    # Only COPY data can be kept for the row cache.
    assert (copies is not None) == (path == "auto")


def test_write_frames_writes_through_the_writers(restore_write_path: Engine) -> None:
    with restore_write_path.begin() as conn:
        target, frames = three_backers(conn)
        first = write_frames(conn, target, frames)
        again = write_frames(conn, target, frames)

    assert first.tables["pledge"].created == 3
    assert (again.tables["pledge"].created, again.tables["pledge"].unchanged) == (0, 3)


@pytest.mark.parametrize("path", PATHS)
def test_an_email_too_long_for_its_column_is_a_rejected_row_not_a_failed_chunk(
    restore_write_path: Engine, tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = backers(3)
    long_email = "x" * 330 + "@example.com"  # longer than backer.email's varchar(320)
    rows[1].email = long_email
    configure(monkeypatch, write_path=path)
    upload_id = stage_export(tmp_path, "long.csv", rows, shop=SHOP, project=PROJECT)
    (chunk_id,) = start_upload(upload_id).chunk_ids

    summary = process_chunk(chunk_id)

    assert (summary.status, summary.imported_rows, summary.rejected_rows) == ("COMPLETED", 2, 1)
    with restore_write_path.connect() as conn:
        rejected = conn.execute(
            text("SELECT errors->'rejected'->0->>'code' FROM csv_upload_chunk WHERE id = :c"),
            {"c": chunk_id},
        ).scalar_one()
    assert rejected == "invalid_email"


def test_a_chunk_processed_again_still_holds_its_rows(
    databases: dict[str, str], tmp_path: Path
) -> None:
    """A worker whose lease ran out may still commit after another run redid its chunk: the rows
    then sit at exactly their own position, and the chunk still owns their survey and inventory.
    """
    rows = backers(6)
    rows[0].addons = (2, 1)
    rows[0].survey_at = "2021/01/02, 03:04"
    on_sqlite, on_postgresql = _processed_again(
        databases,
        write_file(tmp_path, "again.csv", render("2020", rows)),
        "UPDATE survey SET shipping_city = 'Elsewhere' "
        "WHERE pledge_id = (SELECT id FROM pledge WHERE pledge_id = '1')",
        "DELETE FROM inventory WHERE product_id = "
        "(SELECT id FROM product WHERE name = 'Sleeves') AND survey_id = (SELECT s.id "
        "FROM survey s JOIN pledge p ON p.id = s.pledge_id WHERE p.pledge_id = '1')",
    )
    assert on_postgresql == on_sqlite
    ((*_, stats, _),) = on_postgresql["chunk"]
    tables = json.loads(stats)
    assert (tables["survey"]["updated"], tables["survey"]["unchanged"]) == (1, 5)
    assert (tables["inventory"]["created"], tables["pledge"]["unchanged"]) == (1, 6)
    assert {r[6] for r in on_postgresql["survey"]} == {"Springfield", None}


def test_a_chunk_processed_again_counts_each_inventory_line_once_by_its_outcome(
    databases: dict[str, str], tmp_path: Path
) -> None:
    """The inventory's outcomes come from its upsert, not from its staged lines: a line put
    back is created, a changed quantity updated, a line the row lacks deleted, every other
    held line unchanged, alike on both dialects."""
    rows = backers(6)
    rows[0].addons = (2, 1)
    rows[1].addons = (1, 0)
    on_sqlite, on_postgresql = _processed_again(
        databases,
        write_file(tmp_path, "lines.csv", render("2020", rows)),
        "UPDATE inventory SET quantity = 9 WHERE id = (SELECT i.id FROM inventory i "
        "JOIN survey s ON s.id = i.survey_id JOIN pledge p ON p.id = s.pledge_id "
        "JOIN product pr ON pr.id = i.product_id "
        "WHERE p.pledge_id = '1' AND pr.name = 'Dice Tower')",
        "DELETE FROM inventory WHERE id = (SELECT i.id FROM inventory i "
        "JOIN survey s ON s.id = i.survey_id JOIN pledge p ON p.id = s.pledge_id "
        "JOIN product pr ON pr.id = i.product_id "
        "WHERE p.pledge_id = '1' AND pr.name = 'Sleeves')",
        "INSERT INTO inventory (survey_id, product_id, quantity) SELECT s.id, pr.id, 3 "
        "FROM survey s JOIN pledge p ON p.id = s.pledge_id, product pr "
        "WHERE p.pledge_id = '2' AND pr.name = 'Sleeves'",
    )
    assert on_postgresql == on_sqlite
    ((*_, stats, _),) = on_postgresql["chunk"]
    inventory = json.loads(stats)["inventory"]
    lines = len(on_postgresql["inventory"])
    assert lines > 3
    counted = {k: inventory[k] for k in ("created", "updated", "unchanged", "deleted")}
    assert counted == {"created": 1, "updated": 1, "unchanged": lines - 2, "deleted": 1}


def _processed_again(
    databases: dict[str, str], path: Path, *edits: str
) -> list[dict[str, list[tuple[Any, ...]]]]:
    """On each dialect: stage and process `path`'s one chunk, change the tables by `edits` (what
    the second run must put right), put the chunk back to PENDING and process it again; the
    tables as each dialect left them."""
    outcomes = []
    for dialect in DIALECTS:
        engine = on_database(databases[dialect])
        empty_tables(engine)
        upload_id = stage_file(path, shop=SHOP, project=PROJECT)
        (chunk_id,) = start_upload(upload_id).chunk_ids
        process_chunk(chunk_id)
        with engine.begin() as conn:
            for edit in (*edits, "UPDATE csv_upload_chunk SET status = 'PENDING'"):
                conn.execute(text(edit))
        process_chunk(chunk_id)
        outcomes.append(read_state(engine))
    return outcomes


def test_a_copy_error_does_not_quote_the_row(restore_write_path: Engine) -> None:
    """PostgreSQL's CONTEXT for a failed COPY quotes the offending value, here an email; the
    error the chunk records and Prefect logs keeps the message and SQLSTATE only."""
    email = "someone@example.com"
    with restore_write_path.connect() as conn:
        prepare_stages(conn)
        raw = conn.connection.driver_connection
        assert raw is not None
        with raw.cursor() as cursor, pytest.raises(DBAPIError) as raised:
            # currency is varchar(3)
            copy_rows(
                cursor, STAGE_PRODUCT, [("reward", "1", "Deluxe", "1", Decimal("9.00"), email)]
            )
        conn.rollback()

    assert email not in str(raised.value)
    assert "value too long for type character varying(3)" in str(raised.value)
    assert getattr(raised.value.orig, "sqlstate", None) == "22001"
