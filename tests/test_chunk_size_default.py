"""One chunk-size default, PLEDGEFLOW_CHUNK_SIZE, read by every entry point: the CLI, the
import-file flow (and so its deployment, which sets no chunk size of its own) and staging."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import Engine

from flows.import_file import import_file
from pledgeflow.staging import stage_file
from pledgeflow.status import UploadResult
from pledgeflow_bench.exports import backers, render
from tests.helpers import configure, count, write_file

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def chunk_size_150(monkeypatch: pytest.MonkeyPatch) -> None:
    configure(monkeypatch, chunk_size="150")


def test_no_entry_point_has_a_chunk_size_default_of_its_own() -> None:
    for function in (import_file.fn, stage_file):
        assert inspect.signature(function).parameters["chunk_size"].default is None
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    (deployment,) = [d for d in config["deployments"] if d["name"] == "import-file"]
    assert "chunk_size" not in (deployment.get("parameters") or {})


@pytest.mark.usefixtures("prefect_harness", "chunk_size_150")
def test_the_import_file_flow_chunks_by_pledgeflow_chunk_size(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "export.csv", render("2020", backers(400)))

    result = import_file(str(path), "chunks.example.com", "Campaign")

    assert isinstance(result, UploadResult), result  # a failed upload returns a Failed state
    assert (result.status, result.total_chunks, result.imported_rows) == ("COMPLETED", 3, 400)
    assert count(db, "SELECT count(*) FROM csv_upload_chunk") == 3


@pytest.mark.usefixtures("chunk_size_150")
def test_staging_chunks_by_pledgeflow_chunk_size(db: Engine, tmp_path: Path) -> None:
    path = write_file(tmp_path, "export.csv", render("2020", backers(301)))

    upload_id = stage_file(path, shop="chunks.example.com", project="Campaign")

    sql = "SELECT count(*) FROM csv_upload_chunk WHERE upload_id = :u"
    assert count(db, sql, u=upload_id) == 3
