"""Explicit column mappings: from a JSON or YAML file on the CLI, or as a flow parameter."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from flows.process_upload import process_upload
from pledgeflow.cli import app
from pledgeflow.mapping_files import read_mapping_file
from pledgeflow.staging import stage_file
from pledgeflow.uploads import read_upload
from schemas.mappings import ColumnMapping, MappingError
from tests.helpers import count, outcome, write_file

HEADERS = [
    "Order Ref",
    "Customer Email",
    "Customer",
    "Tier",
    "Total",
    "Ordered On",
    "Mug",
    "Poster",
    "Gift note",
]
ROWS = [
    ["A-1", "amy@example.com", "Amy", "Basic", "$20.00", "2024-05-01", "1", "0", ""],
    ["A-2", "bo@example.com", "Bo", "Premium", "$45.00", "2024-05-02", "2", "1", "wrap it"],
    ["A-3", "amy@example.com", "Amy", "Premium", "$45.00", "2024-05-03", "0", "0", ""],
    ["A-4", "cy@example.com", "Cy", "Basic", "twenty", "2024-05-03", "0", "0", ""],
    ["A-5", "di@example.com", "Di", "", "$5.00", "2024-05-04", "0", "3", ""],
    ["A-6", "", "Ed", "Basic", "$20.00", "2024-05-04", "1", "0", ""],
]
MAPPING: dict[str, Any] = {
    "pledge_key": "Order Ref",
    "email": "Customer Email",
    "backer_name": "Customer",
    "reward_title": "Tier",
    "amount": "Total",
    "pledged_at": "Ordered On",
    "items": ["Mug", "Poster"],
}
YAML = """\
pledge_key: Order Ref
email: Customer Email
backer_name: Customer
reward_title: Tier
amount: Total
pledged_at: Ordered On
items: [Mug, Poster]
"""
EXPECTED = {
    "backers": 3,
    "pledges": 4,
    "products": {"reward": 2, "item": 2},
    "surveys": 4,
    "inventory": 4,
    "units": {"Mug": 3, "Poster": 4},
    "sums": {"USD": "115.00"},
}


def custom_file(tmp_path: Path) -> Path:
    out = io.StringIO()
    csv.writer(out).writerows([HEADERS, *ROWS])
    return write_file(tmp_path, "orders.csv", out.getvalue().encode())


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "non-empty object"),
        (["email"], "non-empty object"),
        ({"email": "E", "colour": "C"}, "unknown mapping keys: colour"),
        ({"email": 5}, "`email` must name one header as text"),
        ({"email": "  "}, "`email` must name one header as text"),
        ({"email": "E", "items": "Mug"}, "`items` must be a list of header names"),
        ({"pledge_key": "Order"}, "must name the `email` header"),
    ],
)
def test_malformed_mappings_are_refused(data: object, message: str) -> None:
    with pytest.raises(MappingError, match=message):
        ColumnMapping.from_dict(data)


def test_json_and_yaml_files_read_alike(tmp_path: Path) -> None:
    from_json = read_mapping_file(write_file(tmp_path, "m.json", json.dumps(MAPPING).encode()))
    from_yaml = read_mapping_file(write_file(tmp_path, "m.yaml", YAML.encode()))
    assert from_json == from_yaml
    assert from_json.as_dict() == MAPPING
    with pytest.raises(MappingError, match="not valid YAML"):
        read_mapping_file(write_file(tmp_path, "bad.yml", b"email: [unclosed\n"))
    with pytest.raises(MappingError, match=r"m\.json: unknown mapping keys"):
        read_mapping_file(write_file(tmp_path, "m.json", b'{"email": "E", "x": "y"}'))


@pytest.mark.usefixtures("prefect_harness")
def test_cli_imports_a_custom_layout_with_a_yaml_mapping(db: Engine, tmp_path: Path) -> None:
    path = custom_file(tmp_path)
    mapping = write_file(tmp_path, "orders.yaml", YAML.encode())
    args = ["import", str(path), "--shop", "shop.example.com", "--project", "Campaign"]

    unmapped = CliRunner().invoke(app, [*args, "--json"])
    mapped = CliRunner().invoke(app, [*args, "--mapping", str(mapping), "--json"])

    assert unmapped.exit_code == 1
    assert json.loads(unmapped.stdout)["error"]["code"] == "unknown_layout"
    assert mapped.exit_code == 0, mapped.output
    summary = json.loads(mapped.stdout)
    assert (summary["status"], summary["platform"]) == ("COMPLETED", "custom")
    assert (summary["imported_rows"], summary["rejected_rows"]) == (4, 2)
    assert summary["by_code"] == {"invalid_money": 1, "missing_email": 1}
    assert summary["detection"] == {
        "platform": "custom",
        "signature": "mapping",
        "variant": "custom mapping",
        "pledge_key": "Order Ref",
        "item_columns": ["Mug", "Poster"],
        "unmapped_columns": ["Gift note"],
        "dates": {
            "pledged_at": {
                "column": "Ordered On",
                "formats": ["%Y-%m-%d"],
                "style": "YYYY-MM-DD",
                "zone_names": False,
                "ambiguous": False,
            }
        },
    }
    assert outcome(db) == EXPECTED
    with db.connect() as conn:
        stored = conn.execute(
            text("SELECT mapping FROM csv_upload WHERE id = :u"), {"u": summary["upload_id"]}
        ).scalar_one()
        answers = conn.execute(
            text(
                "SELECT answers FROM survey s JOIN pledge p ON p.id = s.pledge_id "
                "WHERE p.pledge_id = 'A-2'"
            )
        ).scalar_one()
        platforms = set(conn.execute(text("SELECT platform FROM pledge")).scalars())
    assert stored == MAPPING
    assert answers == {"Gift note": "wrap it"}
    assert platforms == {"custom"}


def test_cli_refuses_a_mapping_naming_missing_headers_before_writing(
    db: Engine, tmp_path: Path
) -> None:
    path = custom_file(tmp_path)
    wrong = {**MAPPING, "phone": "Phone", "items": ["Mug", "Hat"]}
    mapping = write_file(tmp_path, "wrong.json", json.dumps(wrong).encode())

    run = CliRunner().invoke(
        app,
        [
            "import",
            str(path),
            "--shop",
            "s.example.com",
            "--project",
            "P",
            "--mapping",
            str(mapping),
        ],
    )

    assert run.exit_code == 2
    assert "invalid_mapping" in run.output
    assert "headers the file does not have: Phone, Hat" in run.output
    assert "available headers: " + ", ".join(HEADERS) in run.output
    for table in ("project", "csv_upload", "csv_upload_chunk", "backer", "pledge"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0


@pytest.mark.usefixtures("prefect_harness")
def test_mapping_as_a_flow_parameter_is_stored_and_read_by_chunks(
    db: Engine, tmp_path: Path
) -> None:
    upload_id = stage_file(
        custom_file(tmp_path), shop="shop.example.com", project="Campaign", chunk_size=2
    )
    first = process_upload(upload_id, return_state=True)
    assert first.is_failed()
    assert (read_upload(upload_id).errors or {})["error"]["code"] == "unknown_layout"

    process_upload(upload_id, mapping=MAPPING, return_state=True)

    result = read_upload(upload_id)
    assert (result.status, result.platform, result.total_chunks) == ("COMPLETED", "custom", 3)
    assert (result.imported_rows, result.rejected_rows) == (4, 2)
    assert outcome(db) == EXPECTED
    with db.connect() as conn:
        stored = conn.execute(
            text("SELECT mapping FROM csv_upload WHERE id = :u"), {"u": upload_id}
        ).scalar_one()
    assert stored == MAPPING


@pytest.mark.usefixtures("prefect_harness")
def test_flow_parameter_mapping_naming_missing_headers_fails_the_upload(
    db: Engine, tmp_path: Path
) -> None:
    upload_id = stage_file(custom_file(tmp_path), shop="shop.example.com", project="Campaign")

    state = process_upload(upload_id, mapping={"email": "E-mail"}, return_state=True)

    assert state.is_failed()
    result = read_upload(upload_id)
    assert result.status == "FAILED"
    error = (result.errors or {})["error"]
    assert error["code"] == "invalid_mapping"
    assert error["missing_headers"] == ["E-mail"]
    assert error["available_headers"] == HEADERS
    for table in ("backer", "product", "pledge", "survey", "inventory"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0
    with db.connect() as conn:
        assert conn.execute(text("SELECT mapping FROM csv_upload")).scalar() is None
