"""Reward tiers kept apart by the platform's id: a real-shaped BackerKit export with 13 tiers."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from pledgeflow.cli import app
from pledgeflow.status import UploadResult
from pledgeflow.summaries import chunk_outcomes, summary_markdown
from tests.exports_backerkit_tiers import TIERS, export, newer_export, older_export, title
from tests.helpers import import_path, outcome, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")


def currency_warnings(result: UploadResult) -> list[dict[str, Any]]:
    """The result's warnings about its currency."""
    return [w for w in (result.stats or {})["warnings"] if w["code"].startswith("currency_")]


def test_thirteen_reward_ids_are_thirteen_products_each_pledge_at_its_own(
    db: Engine, tmp_path: Path, write_path: str
) -> None:
    rows = newer_export()
    path = write_file(tmp_path, "backerkit.csv", export(rows))

    result = import_path(path, chunk_size=7)

    assert result.status == "COMPLETED"
    assert (result.imported_rows, result.rejected_rows) == (len(rows), 0)
    with db.connect() as conn:
        rewards = {
            r.product_key: r
            for r in conn.execute(
                text(
                    "SELECT product_key, name, external_id, price, currency FROM product "
                    "WHERE kind = 'reward'"
                )
            )
        }
        pledges = conn.execute(
            text(
                "SELECT pl.pledge_id, pr.kind::text, pr.product_key, pl.amount, pl.currency "
                "FROM pledge pl LEFT JOIN product pr ON pr.id = pl.product_id"
            )
        ).all()
    assert sorted(rewards) == sorted(TIERS)
    for reward_id, (price, _) in TIERS.items():
        reward = rewards[reward_id]
        assert (reward.name, reward.external_id) == (title(reward_id), reward_id)
        assert reward.price == Decimal(price)
        assert reward.currency is None  # plain numbers, no --currency: warned below
    # Two tiers with one title stay two products.
    assert rewards["5104"].name == rewards["5105"].name == "RollR 30 | Early Bird"
    assert rewards["5107"].name == "RollR 60 | Launch Special"
    assert rewards["5112"].name == "BikR Kit | Four Pack"
    own = {str(b.id): b for b in rows}
    assert len(pledges) == len(rows)
    for pledge_id, kind, product_key, amount, currency in pledges:
        assert (kind, product_key) == ("reward", own[pledge_id].reward), pledge_id
        assert amount == Decimal(own[pledge_id].amount)
        assert currency is None
    held = outcome(db)
    assert held["products"] == {"reward": 13, "item": 4}
    # SKU counts land on the item products, summed exactly.
    skus: dict[str, int] = {}
    for b in rows:
        for sku, count in b.skus.items():
            skus[sku] = skus.get(sku, 0) + int(count)
    assert held["units"] == {sku: n for sku, n in skus.items() if n}


def test_without_currency_the_result_warns_in_json_summary_and_artifact(
    db: Engine, tmp_path: Path
) -> None:
    path = write_file(tmp_path, "backerkit.csv", export(older_export()))

    result = import_path(path, chunk_size=10)

    assert result.status == "COMPLETED"
    (warning,) = currency_warnings(result)
    assert (warning["code"], warning["stored"]) == ("currency_missing", None)
    assert warning["count"] == 3 * len(older_export())  # amount, reward price, shipping
    assert "no currency" in warning["message"] and "--currency" in warning["message"]
    runner = CliRunner()
    shown = runner.invoke(app, ["status", str(result.upload_id)])
    assert shown.exit_code == 0, shown.output
    assert "warning: currency_missing" in shown.output and "--currency" in shown.output
    as_json = json.loads(runner.invoke(app, ["status", str(result.upload_id), "--json"]).output)
    assert warning in as_json["warnings"]
    markdown = summary_markdown(result, chunk_outcomes(result.upload_id))
    assert "| currency_missing |" in markdown and "--currency" in markdown

    with_currency = import_path(path, chunk_size=10, currency="USD")

    assert currency_warnings(with_currency) == []
    with db.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT currency FROM pledge")).scalars().all() == ["USD"]
