"""Every connection slot taken mid-import: the chunks that cannot connect ("too many clients")
are retried until slots come back, and the upload completes with the tables of a clean run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from flows.process_upload import process_upload
from pledgeflow.database import get_engine
from pledgeflow.staging import stage_file
from pledgeflow.uploads import read_upload
from pledgeflow_bench.exports import write_kickstarter_export
from tests.conftest import DATA_TABLES, use_database
from tests.helpers import checksums, import_path, slow_on_harness, slow_pledge_statements
from tests.services import OwnPostgres

# Its own PostgreSQL, two imports, and maybe the Prefect harness are charged to this one test.
pytestmark = slow_on_harness(timeout=900)

MAX_CONNECTIONS = 12
HOLD_SECONDS = 5.0
ROWS, CHUNK_SIZE = 6_000, 500


@pytest.fixture(scope="module")
def small_pg(pg_url: str) -> Iterator[OwnPostgres]:
    """A PostgreSQL of this module's own with 12 connection slots, a migrated database."""
    server = OwnPostgres(settings={"max_connections": str(MAX_CONNECTIONS)})
    try:
        server.start()
        admin = create_engine(server.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        with admin.connect() as conn:
            conn.execute(text("CREATE DATABASE pledgeflow"))
        use_database(server.url("pledgeflow"))
        from pledgeflow.migrations.runner import upgrade

        upgrade()
        yield server
    finally:
        use_database(pg_url)
        server.destroy()


def empty(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {DATA_TABLES} RESTART IDENTITY CASCADE"))


class Hog:
    """Once chunks are being written, takes every connection slot (terminating pledgeflow's
    own sessions to take theirs too) and holds them all for `HOLD_SECONDS`, and longer, up to
    two minutes, until the server has refused one of pledgeflow's connections (on a busy machine
    a chunk may spend longer than `HOLD_SECONDS` parsing before it connects)."""

    # A terminated session's slot is free only once its process has exited: the hog waits up
    # to this long for each before taking the slot.
    TERMINATE_WAIT_MS = 10_000

    def __init__(self, url: str, upload_id: int, server_log: Path) -> None:
        # Autocommit, so that each look at pg_stat_activity sees the server as it is now
        # (PostgreSQL keeps one snapshot of it per transaction).
        self.engine = create_engine(
            url,
            poolclass=NullPool,
            isolation_level="AUTOCOMMIT",
            connect_args={"application_name": "hog"},
        )
        self.upload_id = upload_id
        self.server_log = server_log
        self.held: list[Connection] = []
        self.refused = 0
        self.terminated = 0
        self.error: BaseException | None = None

    def _fill(self) -> None:
        while True:
            try:
                self.held.append(self.engine.connect())
            except OperationalError as exc:
                assert "too many clients" in str(exc), exc
                self.refused += 1
                return

    def refusals_logged(self) -> int:
        return self.server_log.read_text().count("sorry, too many clients already")

    def _end_pledgeflow_sessions(self) -> None:
        """Terminate pledgeflow's sessions and take each freed slot, until none is left: a
        session that reconnected into a slot before the hog took it is ended in turn. Then
        every connection pledgeflow attempts is refused."""
        deadline = time.monotonic() + 60
        while True:
            found, ended = (
                self.held[0]
                .execute(
                    text(
                        "SELECT count(*), count(*) FILTER (WHERE pg_terminate_backend(pid, :wait)) "
                        "FROM pg_stat_activity WHERE application_name = 'pledgeflow'"
                    ),
                    {"wait": self.TERMINATE_WAIT_MS},
                )
                .one()
            )
            if not found:
                return
            self.terminated += int(ended)
            self._fill()
            assert time.monotonic() < deadline, "pledgeflow's sessions kept coming back"

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 300
            with self.engine.connect() as conn:
                while not conn.execute(
                    text(
                        "SELECT count(*) FILTER (WHERE status = 'COMPLETED') >= 1 "
                        "FROM csv_upload_chunk WHERE upload_id = :u"
                    ),
                    {"u": self.upload_id},
                ).scalar_one():
                    assert time.monotonic() < deadline, "no chunk ever completed"
                    conn.commit()
                    time.sleep(0.05)
            self._fill()
            self._end_pledgeflow_sessions()
            time.sleep(HOLD_SECONDS)
            deadline = time.monotonic() + 120
            while self.refusals_logged() <= self.refused and time.monotonic() < deadline:
                time.sleep(0.2)
        except BaseException as exc:
            self.error = exc
        finally:
            for conn in self.held:
                conn.close()
            self.engine.dispose()


def test_chunks_refused_a_connection_are_retried_to_completion(
    small_pg: OwnPostgres, tmp_path: Path
) -> None:
    path = tmp_path / "starved.csv"
    write_kickstarter_export(path, ROWS)
    engine = get_engine()
    empty(engine)
    assert import_path(path, chunk_size=CHUNK_SIZE).status == "COMPLETED"
    clean = checksums(engine)
    empty(engine)
    # Each chunk's pledge statement takes 1 s, so chunks are still to be written when the hog
    # takes every slot (on an idle machine the whole upload finished before it could).
    upload_id = stage_file(path, shop="shop.example.com", project="Campaign", chunk_size=500)
    hog = Hog(small_pg.url("pledgeflow"), upload_id, small_pg.log)
    thread = threading.Thread(target=hog.run, daemon=True)
    with slow_pledge_statements(engine, 1):
        thread.start()
        state = process_upload(upload_id, return_state=True)
        thread.join(timeout=60)

    assert hog.error is None, hog.error
    # Every slot was taken and pledgeflow's own sessions were cut while chunks were written.
    assert hog.refused >= 2
    assert hog.terminated >= 1
    # The server refused more connections than the hog's own attempts: pledgeflow's.
    assert hog.refusals_logged() > hog.refused
    assert state.is_completed(), state
    result = read_upload(upload_id)
    assert (result.status, result.completed_chunks, result.failed_chunks) == ("COMPLETED", 12, 0)
    assert checksums(engine) == clean
