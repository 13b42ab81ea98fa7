"""Whether the configured database holds pledgeflow's tables at the latest revision, checked
before a command uses it; the SQLite default is created on first use."""

from __future__ import annotations

import sys
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from pledgeflow.database import get_engine
from pledgeflow.settings import get_settings


class SchemaMissingError(RuntimeError):
    """The database has no pledgeflow tables, or older ones; nothing was stored."""

    code = "schema_missing"

    def __init__(self, message: str, hint: str = "run `pledgeflow db upgrade` first") -> None:
        super().__init__(message)
        self.hint = hint


def _sqlite_file() -> Path | None:
    url = make_url(get_settings().database_url.get_secret_value())
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def _revisions() -> tuple[str | None, str | None]:
    from pledgeflow.migrations.runner import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    with get_engine().connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def require_schema(*, create: bool) -> None:
    """Refuse a database without pledgeflow's current tables (saying to run `db upgrade`).

    With `create`, an SQLite file is created or migrated instead (the embedded default needs
    no setup); without it, a missing SQLite file is refused and not created.
    """
    from pledgeflow.migrations.runner import upgrade

    sqlite_file = _sqlite_file()
    if sqlite_file is not None and (not sqlite_file.exists() or sqlite_file.stat().st_size == 0):
        if not create:
            raise SchemaMissingError(
                f"no pledgeflow database at {sqlite_file}",
                "run `pledgeflow import` or `pledgeflow db upgrade` here first, "
                "or set PLEDGEFLOW_DATABASE_URL",
            )
        upgrade()
        print(f"created pledgeflow's tables in {sqlite_file}", file=sys.stderr)
        return
    current, head = _revisions()
    if current == head:
        return
    if sqlite_file is not None and create:
        upgrade()
        return
    where = make_url(get_settings().database_url.get_secret_value()).render_as_string(
        hide_password=True
    )
    if current is None:
        raise SchemaMissingError(f"the database {where} has no pledgeflow tables")
    raise SchemaMissingError(
        f"the database {where} is at schema revision {current}; this pledgeflow needs {head}"
    )
