"""The rule for an upload's status (DESIGN section 3) and the aggregation's JSON, as plain
functions: every path to FAILED, COMPLETED and PROCESSING, for an import and a dry run."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from pledgeflow.status import (
    ChunkOutcome,
    UploadResult,
    aggregate,
    chunk_errors,
    upload_errors,
)
from schemas.tables import UploadStatus

COMPLETED, FAILED = UploadStatus.COMPLETED, UploadStatus.FAILED
PENDING, PROCESSING = UploadStatus.PENDING, UploadStatus.PROCESSING


def rejection(row: int, code: str = "missing_email") -> dict[str, Any]:
    return {"row": row, "column": "Email", "value": "", "code": code, "message": "blank"}


def done(index: int, rows: int, rejected: int = 0) -> ChunkOutcome:
    return ChunkOutcome(
        index,
        COMPLETED,
        rows,
        rows - rejected,
        rejected,
        stats={"by_code": {"missing_email": rejected} if rejected else {}, "warnings": []},
        errors={"rejected": [rejection(index * 10 + r + 1) for r in range(rejected)]},
    )


def failed(index: int, rows: int) -> ChunkOutcome:
    error = {"code": "database_error", "message": "value too long"}
    return ChunkOutcome(index, FAILED, rows, errors={"rejected": [], "error": error})


def test_every_chunk_completed_completes_the_upload_with_its_counters() -> None:
    outcome = aggregate([done(0, 10, rejected=2), done(1, 5)], None)
    assert outcome.status == COMPLETED and outcome.error is None
    assert outcome.counters.model_dump() == {
        "total_rows": 15,
        "total_chunks": 2,
        "completed_chunks": 2,
        "failed_chunks": 0,
        "imported_rows": 13,
        "rejected_rows": 2,
    }
    errors = outcome.errors()
    assert errors["by_code"] == {"missing_email": 2} and len(errors["sample"]) == 2
    stats = outcome.stats(2.0, {"currencies": {}, "notes": []}, keep=False)
    assert stats["rows_per_second"] == 7.5 and stats["duration_seconds"] == 2.0


def test_a_failed_chunk_fails_the_upload_naming_it() -> None:
    outcome = aggregate([done(0, 10), failed(1, 10)], None)
    assert outcome.status == FAILED and outcome.counters.failed_chunks == 1
    assert outcome.error is not None and outcome.error["code"] == "chunks_failed"
    assert outcome.error["message"] == "1 of 2 chunks failed"
    assert outcome.error["chunks"] == [
        {"chunk_index": 1, "code": "database_error", "message": "value too long"}
    ]
    dry = aggregate([done(0, 10), failed(1, 10)], None, dry_run=True)
    assert dry.error is not None and dry.error["message"] == "1 of 2 chunks would fail"


def test_every_row_rejected_fails_the_upload_and_a_threshold_fails_more() -> None:
    outcome = aggregate([done(0, 3, rejected=3)], None)
    assert outcome.status == FAILED
    assert outcome.error is not None and outcome.error["code"] == "all_rows_rejected"
    assert outcome.error["top_codes"] == {"missing_email": 3}
    assert aggregate([done(0, 10, rejected=3)], None).status == COMPLETED
    strict = aggregate([done(0, 10, rejected=3)], {"max_rejected_fraction": 0.2})
    assert strict.error is not None and strict.error["code"] == "too_many_rejected"


def test_an_upload_without_chunks_fails_and_a_header_only_file_completes() -> None:
    outcome = aggregate([], None)
    assert outcome.status == FAILED
    assert outcome.error == {"code": "no_data", "message": "the upload has no chunks"}
    assert aggregate([done(0, 0)], None).status == COMPLETED


def test_why_an_upload_could_not_start_stands_until_a_chunk_is_attempted() -> None:
    layout = {"code": "unknown_layout", "message": "no platform matches", "missing_headers": []}
    waiting = aggregate([ChunkOutcome(0, PENDING, 10)], None, layout)
    assert waiting.status == FAILED and waiting.error == layout
    assert aggregate([done(0, 10)], None, layout).status == COMPLETED


def test_a_chunk_another_run_holds_keeps_the_upload_processing() -> None:
    outcome = aggregate([done(0, 10), ChunkOutcome(1, PROCESSING, 10)], None)
    assert outcome.status == PROCESSING and not outcome.final and outcome.error is None


def test_stats_keep_what_was_recorded_before_and_warn_about_the_file() -> None:
    earlier = {
        "detection": {"platform": "kickstarter"},
        "encoding": {"name": "cp1252", "detected": True},
        "staging_seconds": 1.5,
        "unrelated": "dropped",
    }
    stats = aggregate([done(0, 4)], earlier).stats(1.0, {"currencies": {}, "notes": []})
    assert stats["detection"] == {"platform": "kickstarter"} and stats["staging_seconds"] == 1.5
    assert "unrelated" not in stats
    assert [w["code"] for w in stats["warnings"]] == ["decoded_as"]


def test_the_json_is_built_through_the_column_models() -> None:
    assert chunk_errors([rejection(1)]) == {"rejected": [rejection(1)], "error": None}
    with pytest.raises(ValidationError):
        chunk_errors([rejection(1, code="not_a_code")])
    with pytest.raises(ValidationError):
        upload_errors({}, [rejection(r + 1) for r in range(101)], None)


def test_a_run_fails_unless_its_upload_completed_or_its_dry_run_did_not_fail() -> None:
    counters = dict(total_rows=2, imported_rows=0, rejected_rows=0, failed_chunks=0)
    held = UploadResult(
        upload_id=7,
        status="PROCESSING",
        platform=None,
        total_chunks=2,
        completed_chunks=1,
        **counters,
    )
    assert held.run_failure() == "upload 7 is still PROCESSING: 1 chunks held by another run"
    errors = {"error": {"code": "chunks_failed", "message": "1 of 2 chunks failed"}}
    lost = held.model_copy(update={"status": "FAILED", "errors": errors})
    assert lost.run_failure() == "upload 7 failed: chunks_failed: 1 of 2 chunks failed"
    assert held.model_copy(update={"status": "COMPLETED"}).run_failure() is None
    assert held.model_copy(update={"dry_run": True}).run_failure() is None
    assert lost.model_copy(update={"dry_run": True}).run_failure() is not None
