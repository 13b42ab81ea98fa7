"""A role granted by `pledgeflow db grant`: imports, retries and the webhook work; DDL fails."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import psycopg
import pytest
from fastapi.testclient import TestClient
from prefect.deployments.runner import RunnerDeployment
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine, make_url
from typer.testing import CliRunner

from deployments.webhook import create_app
from flows.process_upload import process_upload
from flows.retry_upload import retry_upload
from pledgeflow.cli import app
from pledgeflow.status import UploadResult
from pledgeflow_bench.exports import backers, render
from schemas.tables import Base
from tests.conftest import ADMIN_URL, RUN_ID, use_database
from tests.helpers import configure, count, deliver, import_path, stage_export, write_file

pytestmark = pytest.mark.usefixtures("prefect_harness")
PASSWORD = "Import-Pw-" + uuid.uuid4().hex[:12]


def grant(role: str) -> tuple[int, str]:
    """Run `pledgeflow db grant ROLE` against the configured database (as its owner)."""
    result = CliRunner().invoke(app, ["db", "grant", role])
    return result.exit_code, result.output


@pytest.fixture
def import_role(pg_url: str) -> Iterator[str]:
    """A fresh LOGIN role (unique name) granted by `db grant`; dropped after the test."""
    role = f"pledgeflow_import_{RUN_ID}_{uuid.uuid4().hex[:6]}"
    owner = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with owner.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    try:
        code, output = grant(role)
        assert code == 0, output
        assert f"role {role}:" in output and "no DDL" in output
        yield role
    finally:
        use_database(pg_url)
        with owner.connect() as conn:
            conn.execute(
                text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :r"),
                {"r": role},
            )
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
            conn.exec_driver_sql(f'DROP ROLE "{role}"')
        owner.dispose()


def role_url(pg_url: str, role: str) -> str:
    """The test database as `role` logs in (trust auth: the password is carried, not checked)."""
    url = make_url(pg_url).set(username=role, password=PASSWORD)
    return url.render_as_string(hide_password=False)


def test_grant_gives_exactly_the_four_table_privileges_and_no_ddl(
    db: Engine, pg_url: str, import_role: str
) -> None:
    tables = sorted(Base.metadata.tables)
    with db.connect() as conn:
        held = {
            (t, p): conn.execute(
                text("SELECT has_table_privilege(:r, :t, :p)"), {"r": import_role, "t": t, "p": p}
            ).scalar_one()
            for t in [*tables, "alembic_version"]
            for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES", "TRIGGER")
        }
        temp = conn.execute(
            text("SELECT has_database_privilege(:r, current_database(), 'TEMPORARY')"),
            {"r": import_role},
        ).scalar_one()
        sequences = conn.execute(
            text(
                "SELECT count(*), bool_and(has_sequence_privilege(:r, c.oid, 'USAGE')) "
                "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'S' AND n.nspname = current_schema()"
            ),
            {"r": import_role},
        ).one()
    expected = {
        (t, p): p == "SELECT" or (t != "alembic_version" and p in {"INSERT", "UPDATE", "DELETE"})
        for t, p in held
    }
    assert held == expected
    assert temp is True
    assert sequences[0] > 0 and sequences[1] is True

    # Granting again changes nothing, and revokes what someone added by hand.
    with db.begin() as conn:
        conn.exec_driver_sql(f'GRANT TRUNCATE ON backer TO "{import_role}"')
    assert grant(import_role)[0] == 0
    with db.connect() as conn:
        assert not conn.execute(
            text("SELECT has_table_privilege(:r, 'backer', 'TRUNCATE')"), {"r": import_role}
        ).scalar_one()


@pytest.mark.parametrize(
    "statement",
    [
        "DROP TABLE backer",
        "ALTER TABLE pledge ADD COLUMN note text",
        "ALTER TABLE csv_upload DROP COLUMN stats",
        "TRUNCATE inventory",
        "CREATE TABLE intruder (id int)",
        "CREATE INDEX intruder_idx ON backer (name)",
        "UPDATE alembic_version SET version_num = 'x'",
        "DELETE FROM alembic_version",
    ],
)
def test_the_import_role_cannot_change_the_schema(
    db: Engine, pg_url: str, import_role: str, statement: str
) -> None:
    dsn = make_url(role_url(pg_url, import_role)).set(drivername="postgresql")
    with psycopg.connect(dsn.render_as_string(hide_password=False)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (import_role,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)
    with db.connect() as conn:
        columns = conn.execute(
            text(
                "SELECT count(*) FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = 'pledge' "
                "AND column_name = 'note'"
            )
        ).scalar_one()
    assert columns == 0


@pytest.mark.slow
def test_an_import_a_retry_and_the_webhook_run_as_the_import_role(
    db: Engine,
    pg_url: str,
    import_role: str,
    write_path: str,
    flaky_pledge: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    use_database(role_url(pg_url, import_role))
    imported = import_path(
        write_file(tmp_path, "role.csv", render("2020", backers(40))), chunk_size=10
    )
    assert imported.status == "COMPLETED", imported.errors
    assert imported.imported_rows == 40

    # The second chunk fails once (a database trigger); the retry, as the role, completes it.
    rows = backers(30)
    rows[14].extra["Backer Number"] = flaky_pledge
    failed = import_path(
        write_file(tmp_path, "flaky.csv", render("2020", rows)), chunk_size=10, project="Flaky"
    )
    assert failed.status == "FAILED"
    retried = retry_upload(failed.upload_id)
    assert isinstance(retried, UploadResult), retried  # a failed upload returns a Failed state
    assert retried.status == "COMPLETED"
    assert (retried.imported_rows, retried.completed_chunks) == (30, 3)

    configure(monkeypatch, webhook_secret="role-secret")
    upload_id = stage_export(
        tmp_path, "hook.csv", backers(3), shop=f"h-{uuid.uuid4().hex[:8]}.example.com", project="H"
    )
    cast(RunnerDeployment, process_upload.to_deployment(name="process-upload")).apply()
    answer = deliver(TestClient(create_app()), "role-secret", {"upload_id": upload_id})
    assert answer.status_code == 202, answer.text
    stored_run = count(
        db, "SELECT count(*) FROM csv_upload WHERE flow_run_id = :f", f=answer.json()["flow_run_id"]
    )
    assert stored_run == 1
    with db.connect() as conn:
        writers = (
            conn.execute(
                text(
                    "SELECT DISTINCT usename FROM pg_stat_activity "
                    "WHERE application_name = 'pledgeflow' AND datname = current_database()"
                )
            )
            .scalars()
            .all()
        )
    assert import_role in writers
    assert count(db, "SELECT count(*) FROM pledge") == 40 + 30


def test_grant_refuses_unknown_superuser_roles_and_sqlite(pg_url: str, sqlite_db: Engine) -> None:
    assert grant("no_such_role")[0] == 2  # on SQLite first
    assert "needs PostgreSQL" in grant("no_such_role")[1]
    use_database(pg_url)
    code, output = grant(f"missing_{RUN_ID}")
    assert (code, "unknown_role") == (2, output.split(":")[1].strip())
    superuser = make_url(ADMIN_URL).username or "postgres"
    code, output = grant(superuser)
    assert code == 2 and "superuser" in output
