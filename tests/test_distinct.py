"""Created / updated / unchanged count distinct rows of each table, not rows per chunk."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

import pledgeflow.distinct as distinct_module
from pledgeflow.distinct import DistinctCounts, TableKeys, project_salt
from pledgeflow.staging import stage_file
from pledgeflow.status import ChunkOutcome, aggregate, stored_keys
from pledgeflow_bench.exports import backers, render
from tests.helpers import count, run_plain, write_file


def _chunk(table: str, salt: str, **outcomes: list[str]) -> dict[str, Any]:
    keys = TableKeys()
    for outcome, names in outcomes.items():
        for name in names:
            keys.add(outcome, ("project", name))
    counts = {o: len(outcomes.get(o, [])) for o in ("created", "updated", "unchanged")}
    return {"tables": {table: {**counts, "deleted": 0}}, "keys": {table: keys.encoded(salt)}}


def test_a_key_counts_once_with_its_strongest_outcome() -> None:
    salt = project_salt(1)
    distinct = DistinctCounts(["product"])
    distinct.add_chunk(_chunk("product", salt, created=["a", "b"], unchanged=["c"]))
    distinct.add_chunk(_chunk("product", salt, unchanged=["a", "b", "c", "d"]))
    distinct.add_chunk(_chunk("product", salt, updated=["b", "d"], unchanged=["a"]))

    assert distinct.counts()["product"] == {
        "created": 2,  # a, b: created by one chunk, whatever the others saw
        "updated": 1,  # d
        "unchanged": 1,  # c
        "deleted": 0,
    }


def test_chunks_without_keys_are_summed_and_digests_depend_on_the_project() -> None:
    distinct = DistinctCounts(["backer"])
    distinct.add_chunk(
        {"tables": {"backer": {"created": 3, "updated": 1, "unchanged": 2, "deleted": 0}}}
    )
    distinct.add_chunk(_chunk("backer", project_salt(2), created=["x"], unchanged=["y"]))
    assert distinct.counts()["backer"] == {
        "created": 4,
        "updated": 1,
        "unchanged": 3,
        "deleted": 0,
    }
    one, two = (
        _chunk("backer", project_salt(u), created=["x@example.com"])["keys"]["backer"]["created"]
        for u in (1, 2)
    )
    assert one != two
    assert "example" not in one


def test_an_upload_counts_each_product_and_backer_once(
    db: Engine, tmp_path: Path, write_path: str
) -> None:
    # Nine chunks share the tiers' products, and repeated emails share backers across chunks.
    rows = backers(45, repeat_every=4)
    for earlier, later in itertools.pairwise(rows):
        if later.email == earlier.email:  # the same person: re-importing changes nothing
            later.name = earlier.name
            later.extra["Backer UID"] = str(1_000_000_000 + earlier.number)
    path = write_file(tmp_path, "shared.csv", render("2020", rows))

    def imported() -> dict[str, dict[str, int]]:
        upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=5)
        result = run_plain(upload_id)
        assert result.status == "COMPLETED", result.errors
        assert result.total_chunks == 9
        tables: dict[str, dict[str, int]] = (result.stats or {})["tables"]
        return tables

    first = imported()
    products = count(db, "SELECT count(*) FROM product")
    people = count(db, "SELECT count(*) FROM backer")
    pledges = count(db, "SELECT count(*) FROM pledge")
    lines = count(db, "SELECT count(*) FROM inventory")
    assert 1 < products < 45 and people < 45
    assert first["product"] == {"created": products, "updated": 0, "unchanged": 0, "deleted": 0}
    assert (first["backer"]["created"], first["backer"]["unchanged"]) == (people, 0)
    assert first["pledge"]["created"] == pledges == 45
    assert first["inventory"]["created"] == lines

    again = imported()
    assert again["product"] == {"created": 0, "updated": 0, "unchanged": products, "deleted": 0}
    assert again["backer"] == {"created": 0, "updated": 0, "unchanged": people, "deleted": 0}
    assert again["pledge"] == {"created": 0, "updated": 0, "unchanged": pledges, "deleted": 0}
    assert again["survey"]["unchanged"] == count(db, "SELECT count(*) FROM survey")
    assert again["inventory"]["unchanged"] == lines


def _many_chunks(salt: str) -> list[dict[str, Any]]:
    # Overlapping names across chunks and outcomes: created beats updated beats unchanged.
    chunks = []
    for start in range(0, 200, 40):
        names = [f"n{i}" for i in range(start, start + 60)]
        chunks.append(
            _chunk(
                "product",
                salt,
                created=names[:10],
                updated=names[10:35],
                unchanged=names[25:],
            )
        )
    return chunks


def test_counts_in_passes_over_digest_ranges_equal_counts_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    salt = project_salt(1)

    def counted(per_pass: int) -> dict[str, int]:
        monkeypatch.setattr(distinct_module, "PASS_DIGESTS", per_pass)
        distinct = DistinctCounts(["product"])
        for chunk in _many_chunks(salt):
            distinct.add_chunk(chunk)
        return distinct.counts()["product"]

    at_once = counted(1 << 21)
    # Of n0-n219: created n0-9, n40-49, ... (50); updated n10-34, n50-74, ... (125); the rest.
    assert at_once == {"created": 50, "updated": 125, "unchanged": 45, "deleted": 0}
    assert len(distinct_module.digest_ranges(300, 7)) == 43
    assert counted(7) == counted(64) == at_once


def test_keys_left_stored_count_as_keys_held() -> None:
    salt = project_salt(1)
    chunks = _many_chunks(salt)
    held = DistinctCounts(["product"])
    stored = DistinctCounts(["product"])
    for index, chunk in enumerate(chunks):
        held.add_chunk(chunk)
        sizes = {
            table: sum(map(distinct_module.packed_size, packed.values()))
            for table, packed in chunk["keys"].items()
        }
        stored.add_stored(index, {"tables": chunk["tables"]}, sizes)
    with pytest.raises(ValueError, match="reader"):
        stored.counts()
    reads: list[int] = []

    def reader() -> Iterator[tuple[int, dict[str, dict[str, str]]]]:
        reads.append(1)
        yield from ((i, chunk["keys"]) for i, chunk in enumerate(chunks))

    assert stored.counts(reader) == held.counts()
    assert reads == [1]  # one pass: 300 digests


def test_an_upload_is_aggregated_from_stored_keys_in_passes(
    db: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = backers(40, repeat_every=3)
    path = write_file(tmp_path, "stored.csv", render("2020", rows))
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=7)
    result = run_plain(upload_id)
    assert result.status == "COMPLETED", result.errors
    tables = (result.stats or {})["tables"]

    monkeypatch.setattr(distinct_module, "PASS_DIGESTS", 16)  # dozens of passes
    with db.connect() as conn:
        chunks = ChunkOutcome.read(conn, upload_id)
        assert all("keys" not in (chunk.stats or {}) for chunk in chunks)
        sizes = [dict(chunk.key_sizes or {}) for chunk in chunks]
        assert sum(size["pledge"] for size in sizes) == 40
        again = aggregate(chunks, result.stats, keys=stored_keys(conn, upload_id, chunks))
    assert again.tables == tables
    assert tables["pledge"]["created"] == 40 and tables["backer"]["created"] < 40
