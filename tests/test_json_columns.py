"""The JSON Schemas shipped in clients/json-schema are the typed models' own, and the stored
JSON of real imports (Kickstarter with rejected rows, BackerKit, Indiegogo, Gamefound, a web
app's chunk of numbers and nulls, an unknown layout) validates against them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.staging import stage_file
from pledgeflow_bench.exports import backers, render
from schemas.json_columns import MODELS, json_schema
from tests.exports_backerkit_tiers import export as backerkit_export
from tests.exports_backerkit_tiers import newer_export
from tests.exports_gamefound import render as gamefound_render
from tests.exports_gamefound import sample_numbered
from tests.exports_indiegogo import render as indiegogo_render
from tests.exports_indiegogo import sample as indiegogo_sample
from tests.helpers import run_plain, store_web_app_upload, write_file

FOLDER = Path(__file__).resolve().parent.parent / "clients" / "json-schema"


def shipped(name: str) -> Draft202012Validator:
    schema = json.loads((FOLDER / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_shipped_schemas_are_the_models(name: str) -> None:
    on_disk = json.loads((FOLDER / f"{name}.schema.json").read_text())
    assert on_disk == json_schema(MODELS[name]), (
        "clients/json-schema is stale: python -m schemas.json_columns clients/json-schema"
    )


def problems(validator: Draft202012Validator, value: Any, where: str) -> list[str]:
    return [
        f"{where}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(value)
    ]


def test_real_imports_store_json_the_schemas_accept(db: Engine, tmp_path: Path) -> None:
    people = backers(30)
    people[2].email = "  "
    people[4].pledge = "about ten dollars"
    people[6].pledged_at = "last tuesday"
    files = {
        "kickstarter.csv": render("2020", people),
        "backerkit.csv": backerkit_export(newer_export()),
        "indiegogo.csv": indiegogo_render(indiegogo_sample()),
        "gamefound.csv": gamefound_render(sample_numbered()),
        "unknown.csv": b"Backer Number,Email Address,Pledge Amount\n1,a@example.com,$1.00\n",
    }
    for name, data in files.items():
        upload_id = stage_file(
            write_file(tmp_path, name, data), shop="json.example.com", project=name, chunk_size=7
        )
        run_plain(upload_id)
    headers = [
        "Backer Number",
        "Backer UID",
        "Backer Name",
        "Email",
        "Pledge Amount",
        "Pledged Status",
        "Notes",
    ]
    web = store_web_app_upload(
        db, headers, [[[12345678901234567890, 1, "A", "a@example.com", 5, "collected", None]]]
    )
    run_plain(web)

    found: list[str] = []
    with db.connect() as conn:
        uploads = conn.execute(text("SELECT id, status, stats, errors FROM csv_upload")).all()
        chunks = conn.execute(text("SELECT data, errors FROM csv_upload_chunk")).all()
    assert len(uploads) == 6 and len(chunks) > 10
    assert {u.status for u in uploads} == {"COMPLETED", "FAILED"}
    assert any(u.errors["by_code"] for u in uploads) and any(u.errors["error"] for u in uploads)
    for upload in uploads:
        found += problems(shipped("upload-errors"), upload.errors, f"upload {upload.id} errors")
        if upload.status == "COMPLETED":
            found += problems(shipped("upload-stats"), upload.stats, f"upload {upload.id} stats")
    for chunk in chunks:
        found += problems(shipped("chunk-data"), chunk.data, "chunk data")
        if chunk.errors is not None:
            found += problems(shipped("chunk-errors"), chunk.errors, "chunk errors")
    assert not found, "\n".join(found[:20])


def test_the_schemas_refuse_what_breaks_the_contract() -> None:
    assert problems(shipped("chunk-data"), {"headers": [], "rows": []}, "no headers")
    assert problems(shipped("chunk-data"), {"headers": ["A"], "rows": [[{"x": 1}]]}, "object")
    rejection = {"row": 0, "column": "Email", "value": "", "code": "missing_email", "message": ""}
    assert problems(shipped("chunk-errors"), {"rejected": [rejection], "error": None}, "row 0")
    rejection |= {"row": 1, "code": "not_a_code"}
    assert problems(shipped("chunk-errors"), {"rejected": [rejection], "error": None}, "code")
