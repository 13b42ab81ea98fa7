"""Created / updated / unchanged count distinct rows of each table, not rows per chunk."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from pledgeflow.distinct import DistinctCounts, TableKeys, project_salt
from pledgeflow.staging import stage_file
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
