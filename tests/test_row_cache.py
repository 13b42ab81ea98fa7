"""The Redis row cache: a chunk imported again with the same inputs skips mapping, not the rules."""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.row_cache import RowCache
from pledgeflow.settings import get_settings
from pledgeflow.status import UploadResult
from pledgeflow_bench.exports import backers, render
from tests.exports_corpus import INDIEGOGO
from tests.helpers import (
    OTHER_ROW_INPUTS,
    ROW_INPUTS,
    configure,
    configured,
    fetch_pairs,
    fetch_rows,
    import_path,
    table_contents,
    write_file,
)
from tests.services import free_port

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(autouse=True)
def staged_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The cache serves the COPY-staged path, the one PostgreSQL takes by default; a Redis error
    seen by an earlier test must not leave it paused. Unchanged chunks are not skipped here
    (`chunk_skip`, tested on its own), or a re-import would never reach the cache."""
    configure(monkeypatch, skip_unchanged_chunks="0", write_path="auto")
    RowCache._paused_until.clear()
    yield
    RowCache._paused_until.clear()


def from_cache(engine: Engine, result: UploadResult) -> list[bool]:
    """Whether each chunk of the upload, in order, took its rows from the cache."""
    with engine.connect() as conn:
        return [
            bool(flag)
            for (flag,) in conn.execute(
                text(
                    "SELECT (stats ->> 'rows_from_cache')::boolean FROM csv_upload_chunk "
                    "WHERE upload_id = :u ORDER BY chunk_index"
                ),
                {"u": result.upload_id},
            )
        ]


def cache_keys(client: redis.Redis) -> list[bytes]:
    return list(client.scan_iter(match=f"{get_settings().redis_key_prefix}:rows:*"))


def import_new_entries(
    client: redis.Redis, rows: int, shop: str, tmp_path: Path
) -> tuple[Path, set[bytes]]:
    """Import a file of `rows` rows in 8-row chunks; the file and the cache keys it added."""
    path = write_file(tmp_path, "k.csv", render("2020", backers(rows)))
    before = set(cache_keys(client))
    import_path(path, chunk_size=8, shop=shop)
    return path, set(cache_keys(client)) - before


def counts(result: UploadResult) -> dict[str, dict[str, int]]:
    return dict((result.stats or {})["tables"])


def chunk_reports(engine: Engine, result: UploadResult) -> list[tuple[Any, ...]]:
    """Each chunk's counters, rejected rows and counts by reason, in order."""
    return fetch_rows(
        engine,
        "SELECT imported_rows, rejected_rows, CAST(errors AS TEXT), "
        "CAST(stats -> 'by_code' AS TEXT) FROM csv_upload_chunk "
        "WHERE upload_id = :u ORDER BY chunk_index",
        u=result.upload_id,
    )


def test_a_reimported_file_takes_every_chunk_from_the_cache_and_changes_nothing(
    db: Engine, tmp_path: Path, redis_client: redis.Redis
) -> None:
    shop = "cache-reimport.example.com"  # the key holds the shop: no other test's entries
    rows = backers(30, repeat_every=6)
    rows[4] = dataclasses.replace(rows[4], email="")  # missing_email in the first chunk
    rows[20] = dataclasses.replace(rows[20], pledged_at="not a date")  # invalid_date
    path = write_file(tmp_path, "k.csv", render("2020", rows))

    first = import_path(path, chunk_size=8, shop=shop)
    stored = table_contents(db)
    again = import_path(path, chunk_size=8, shop=shop)

    assert first.status == again.status == "COMPLETED"
    assert from_cache(db, first) == [False] * 4
    assert from_cache(db, again) == [True] * 4
    assert (again.imported_rows, again.rejected_rows) == (first.imported_rows, 2) == (28, 2)
    # Rejected rows keep their file row numbers, columns and codes.
    assert chunk_reports(db, again) == chunk_reports(db, first)
    assert again.errors == first.errors
    assert all(c["created"] == c["updated"] == c["deleted"] == 0 for c in counts(again).values())
    assert counts(again)["pledge"]["unchanged"] == 28
    assert table_contents(db) == stored
    # Every entry expires within the configured time.
    ttls = [redis_client.ttl(key) for key in cache_keys(redis_client)]
    assert len(ttls) >= 4
    assert all(0 < ttl <= get_settings().row_cache_ttl_seconds for ttl in ttls)


def test_a_cached_chunk_rewrites_what_a_newer_upload_changed(db: Engine, tmp_path: Path) -> None:
    shop = "cache-rewrite.example.com"
    rows = backers(24, repeat_every=5)
    changed = [
        dataclasses.replace(b, status="dropped", addons=(0, 0), name=f"{b.name} Jr")
        if b.number % 3 == 0
        else b
        for b in rows
    ]
    original = write_file(tmp_path, "a.csv", render("2020", rows))
    newer = write_file(tmp_path, "b.csv", render("2020", changed))

    import_path(original, chunk_size=8, shop=shop)
    stored = table_contents(db)
    import_path(newer, chunk_size=8, shop=shop)
    assert table_contents(db) != stored
    back = import_path(original, chunk_size=8, shop=shop)

    assert back.status == "COMPLETED"
    assert from_cache(db, back) == [True] * 3
    # The cached rows went through the position rule and the guards like mapped ones.
    assert counts(back)["pledge"]["updated"] == sum(1 for b in rows if b.number % 3 == 0)
    assert counts(back)["inventory"]["created"] > 0
    assert table_contents(db) == stored


def test_a_changed_cell_misses_only_its_own_chunk(db: Engine, tmp_path: Path) -> None:
    shop = "cache-one-cell.example.com"
    rows = backers(24)
    edited = [
        dataclasses.replace(b, notes="leave at the door") if b.number == 12 else b for b in rows
    ]
    import_path(write_file(tmp_path, "a.csv", render("2020", rows)), chunk_size=8, shop=shop)

    second = import_path(
        write_file(tmp_path, "b.csv", render("2020", edited)), chunk_size=8, shop=shop
    )

    assert from_cache(db, second) == [True, False, True]
    assert counts(second)["survey"]["updated"] == 1


def test_another_project_currency_misses_the_cache(db: Engine, tmp_path: Path) -> None:
    shop = "cache-currency.example.com"
    # Bare amounts and no reward tier (whose shipping cell names USD): the project decides.
    rows = [dataclasses.replace(b, pledge="25.00", tier=None) for b in backers(8)]
    path = write_file(tmp_path, "k.csv", render("2020", rows))
    import_path(path, chunk_size=8, shop=shop, project="Dollars", currency="USD")

    euros = import_path(path, chunk_size=8, shop=shop, project="Euros", currency="EUR")
    again = import_path(path, chunk_size=8, shop=shop, project="Euros", currency="EUR")

    assert from_cache(db, euros) == [False]
    assert from_cache(db, again) == [True]
    currencies = fetch_pairs(
        db,
        "SELECT j.name, min(p.currency) FROM pledge p "
        "JOIN project j ON j.id = p.project_id GROUP BY j.name",
    )
    assert currencies == {"Dollars": "USD", "Euros": "EUR"}


def test_cached_rows_the_database_refuses_are_mapped_and_replaced(
    db: Engine, tmp_path: Path, redis_client: redis.Redis
) -> None:
    shop = "cache-refused.example.com"
    path, (key,) = import_new_entries(redis_client, 8, shop, tmp_path)
    # A well-formed entry whose pledge rows COPY cannot read (too few columns).
    redis_client.hset(key, "pf_stage_pledge", zlib.compress(b"only\tthree\tcolumns\n"))
    stored = table_contents(db)

    repaired = import_path(path, chunk_size=8, shop=shop)
    again = import_path(path, chunk_size=8, shop=shop)

    assert repaired.status == again.status == "COMPLETED"
    assert from_cache(db, repaired) == [False]
    assert from_cache(db, again) == [True]
    assert table_contents(db) == stored


def test_the_key_holds_every_input_the_rows_depend_on(pg_url: str) -> None:
    cache = RowCache.from_settings()
    assert cache is not None
    inputs = ROW_INPUTS | {"encoding": "utf-8"}
    variations = OTHER_ROW_INPUTS | {"encoding": "latin-1"}
    base = cache.key(**inputs)
    keys = {cache.key(**(inputs | {name: value})) for name, value in variations.items()}
    assert base == cache.key(**inputs)
    assert base not in keys
    assert len(keys) == len(variations)
    with configured(max_cell_chars="64"):
        assert cache.key(**inputs) != base


def test_an_unreadable_entry_is_mapped_afresh(
    db: Engine, tmp_path: Path, redis_client: redis.Redis
) -> None:
    shop = "cache-garbage.example.com"
    path, ours = import_new_entries(redis_client, 16, shop, tmp_path)
    assert len(ours) == 2
    for number, key in enumerate(sorted(ours)):
        if number == 0:
            redis_client.hset(key, "meta", b"not zlib at all")
        else:
            redis_client.hdel(key, "pf_stage_pledge")
    stored = table_contents(db)

    again = import_path(path, chunk_size=8, shop=shop)

    assert again.status == "COMPLETED"
    assert from_cache(db, again) == [False, False]
    assert table_contents(db) == stored
    assert all(c["created"] == c["updated"] == 0 for c in counts(again).values())


def test_without_reachable_redis_chunks_are_mapped_and_imported(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "k.csv", render("2020", backers(16)))
    with configured(redis_url=f"redis://127.0.0.1:{free_port()}/0"):
        first = import_path(path, chunk_size=8, shop="cache-down.example.com")
        again = import_path(path, chunk_size=8, shop="cache-down.example.com")

    assert first.status == again.status == "COMPLETED"
    assert from_cache(db, first) == from_cache(db, again) == [False, False]
    assert counts(again)["pledge"]["unchanged"] == 16


def test_a_cached_chunk_is_not_reused_under_another_date_order(
    db: Engine, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Two files whose first chunk is the same bytes: the last chunk of one shows a day above 12
    # (day first), of the other a month above 12 (month first). The first chunk's dates must
    # follow each file's order, not the rows cached from the other file.
    day_first = INDIEGOGO
    month_first = dataclasses.replace(
        INDIEGOGO,
        rows=[*INDIEGOGO.rows[:2], {**INDIEGOGO.rows[2], "Funding Date": "03/14/2016 23:10"}],
    )
    shop = "dates-cache.example.com"
    stored: dict[str, Any] = {}
    for name, corpus in (("day", day_first), ("month", month_first)):
        path = write_file(tmp_path, f"{name}.csv", corpus.render())
        result = import_path(path, chunk_size=2, shop=shop, project=name)
        assert result.status == "COMPLETED", result.errors
        assert from_cache(db, result) == [False, False]
        with db.connect() as conn:
            stored[name] = conn.execute(
                text(
                    "SELECT pl.pledged_at FROM pledge pl JOIN project j ON j.id = pl.project_id "
                    "WHERE j.shop = :s AND j.name = :p AND pl.pledge_id = '77001'"
                ),
                {"s": shop, "p": name},
            ).scalar_one()

    assert (stored["day"].month, stored["day"].day) == (3, 1)
    assert (stored["month"].month, stored["month"].day) == (1, 3)
