"""The currency is never guessed in silence: a project remembers the one its uploads establish."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow_bench.exports import backers, render
from tests.helpers import import_path, write_file
from tests.test_product_keys import currency_warnings

pytestmark = pytest.mark.usefixtures("prefect_harness")


def aud_reward_report() -> bytes:
    """A 2017-2019 reward report whose amounts carry the campaign's code (`$17.17 AUD`)."""
    rows = backers(4)
    for b in rows:
        b.extra.update(
            {
                "Pledge Amount": f"${17 + b.number}.17 AUD",
                "Shipping Amount": "$5.00 AUD",
                "Reward Minimum": "$10.00 AUD",
            }
        )
    return render("2017", rows)


def no_reward_report(first: int) -> bytes:
    """The same campaign's no-reward report: bare `$` amounts, no code."""
    rows = backers(3)
    for b in rows:
        b.number += first
        b.email = f"noreward{b.number}@example.com"
        b.extra["Pledge Amount"] = f"${b.number}.9"
    return render("no-reward", rows)


def test_bare_dollars_after_an_aud_report_are_stored_in_aud(
    db: Engine, tmp_path: Path, write_path: str
) -> None:
    first = import_path(write_file(tmp_path, "rewards.csv", aud_reward_report()))

    second = import_path(write_file(tmp_path, "no-reward.csv", no_reward_report(100)))

    assert (first.status, second.status) == ("COMPLETED", "COMPLETED")
    assert currency_warnings(first) == currency_warnings(second) == []
    with db.connect() as conn:
        assert conn.execute(text("SELECT currency FROM project")).scalar_one() == "AUD"
        stored = conn.execute(
            text("SELECT pledge_id, amount::text, currency FROM pledge ORDER BY pledge_id")
        ).all()
        products = conn.execute(text("SELECT DISTINCT currency FROM product")).scalars().all()
    assert [tuple(r) for r in stored] == [
        ("1", "18.17", "AUD"),
        ("101", "101.90", "AUD"),
        ("102", "102.90", "AUD"),
        ("103", "103.90", "AUD"),
        ("2", "19.17", "AUD"),
        ("3", "20.17", "AUD"),
        ("4", "21.17", "AUD"),
    ]
    assert products == ["AUD"]


def test_bare_dollars_in_a_new_project_are_stored_as_usd_with_a_warning(
    db: Engine, tmp_path: Path
) -> None:
    result = import_path(write_file(tmp_path, "no-reward.csv", no_reward_report(0)))

    assert result.status == "COMPLETED"
    (warning,) = currency_warnings(result)
    assert (warning["code"], warning["stored"], warning["symbol"]) == (
        "currency_guessed",
        "USD",
        "$",
    )
    assert 'USD from "$"' in warning["message"] and "--currency" in warning["message"]
    with db.connect() as conn:
        # A guess is not remembered: the project still has no currency.
        assert conn.execute(text("SELECT currency FROM project")).scalar_one() is None
        assert conn.execute(text("SELECT DISTINCT currency FROM pledge")).scalar_one() == "USD"

    fixed = import_path(write_file(tmp_path, "no-reward.csv", no_reward_report(0)), currency="AUD")

    assert currency_warnings(fixed) == []
    assert (fixed.stats or {})["tables"]["pledge"]["updated"] == 3
    with db.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT currency FROM pledge")).scalar_one() == "AUD"


def test_the_currency_is_decided_once_for_every_chunk(db: Engine, tmp_path: Path) -> None:
    """The code appears only in the last chunk; the bare amounts of the first chunks use it."""
    rows = backers(9)
    for b in rows:
        b.extra["Pledge Amount"] = f"${b.number}.00" if b.number < 9 else "$9.00 CAD"
        b.extra["Shipping Amount"] = b.extra["Reward Minimum"] = ""

    result = import_path(write_file(tmp_path, "cad.csv", render("2017", rows)), chunk_size=3)

    assert currency_warnings(result) == []
    with db.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT currency FROM pledge")).scalars().all() == ["CAD"]
