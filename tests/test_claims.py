"""A chunk's claim belongs to its owner: the owner takes it back at once, nobody else before the
lease; a failure is recorded only by the owner, and never over a completed chunk."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.chunks import process_chunk
from pledgeflow.failures import is_transient
from pledgeflow.status import claim_chunk, mark_chunk_failed
from pledgeflow.uploads import start_upload
from pledgeflow_bench.exports import backers
from tests.helpers import stage_export


def staged_chunks(tmp_path: Path) -> list[int]:
    upload_id = stage_export(
        tmp_path,
        "claims.csv",
        backers(6),
        shop="claims.example.com",
        project="Claims",
        chunk_size=3,
    )
    return start_upload(upload_id).chunk_ids


def chunk_row(db: Engine, chunk_id: int) -> tuple[str, str | None, int]:
    with db.connect() as conn:
        row = conn.execute(
            text("SELECT status, claimed_by, attempts FROM csv_upload_chunk WHERE id = :c"),
            {"c": chunk_id},
        ).one()
    return str(row.status), row.claimed_by, int(row.attempts)


def test_the_owner_takes_its_claim_back_at_once_and_no_other_run_can(
    db: Engine, tmp_path: Path
) -> None:
    first, _ = staged_chunks(tmp_path)

    assert claim_chunk(first, owner="flow-run:a") == 0
    assert claim_chunk(first, owner="flow-run:b") is None
    assert claim_chunk(first) is None
    assert claim_chunk(first, owner="flow-run:a") == 0
    assert chunk_row(db, first) == ("PROCESSING", "flow-run:a", 2)

    # Only the owner records a failure; then anyone may take the FAILED chunk.
    assert not mark_chunk_failed(first, "transient_database_error", "lost", owner="flow-run:b")
    assert mark_chunk_failed(first, "transient_database_error", "lost", owner="flow-run:a")
    assert chunk_row(db, first)[0] == "FAILED"
    assert claim_chunk(first, owner="flow-run:b") == 0


def test_a_completed_chunk_is_never_marked_failed_and_its_owner_skips_it(
    db: Engine, tmp_path: Path
) -> None:
    first, _ = staged_chunks(tmp_path)
    summary = process_chunk(first, owner="flow-run:a")
    assert summary.status == "COMPLETED" and summary.imported_rows == 3

    # A retry whose commit acknowledgement was lost finds the chunk done and skips it.
    assert not mark_chunk_failed(first, "transient_database_error", "lost", owner="flow-run:a")
    again = process_chunk(first, owner="flow-run:a")
    assert (again.status, again.claimed) == ("COMPLETED", False)
    assert chunk_row(db, first)[0] == "COMPLETED"


def test_no_free_connection_slot_is_transient() -> None:
    import psycopg
    from sqlalchemy.exc import OperationalError

    refused = psycopg.errors.TooManyConnections("sorry, too many clients already")
    assert is_transient(OperationalError("connect", {}, refused))
    assert not is_transient(
        OperationalError("insert", {}, psycopg.errors.NotNullViolation("null value"))
    )
