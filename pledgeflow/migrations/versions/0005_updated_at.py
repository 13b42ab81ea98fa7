"""updated_at on every table the web app reads, moved only when a row really changes

PostgreSQL keeps it with one BEFORE UPDATE trigger per table (pledgeflow/migrations/touch.py):
updated_at becomes now() when any other column differs between the old and new version. So
every writer (pledgeflow's write paths, its status and counter updates, the web app's own
updates) keeps it, and an UPDATE that writes the same values does not move it; rows the write
paths' no-op guards leave alone are not updated at all. Existing rows get the migration's time.

SQLite (the embedded demo database) gets the column with its insert default only: Alembic's
batch operations rebuild SQLite tables and would silently drop triggers.

Revision ID: 0005_updated_at
Revises: 0004_keys
Create Date: 2026-12-05 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pledgeflow.migrations.touch import (
    CREATE_FUNCTION,
    FUNCTION,
    create_touch_trigger,
    trigger_name,
)

revision: str = "0005_updated_at"
down_revision: str | None = "0004_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "project",
    "csv_upload",
    "csv_upload_chunk",
    "backer",
    "product",
    "pledge",
    "survey",
    "inventory",
)


def updated_at() -> sa.Column[object]:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if not postgresql:
        _rebuild_sqlite_tables(add=True)
        return
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(updated_at())
    op.execute(CREATE_FUNCTION)
    for table in TABLES:
        create_touch_trigger(op.get_bind(), table)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {trigger_name(table)} ON {table}")
        op.execute(f"DROP FUNCTION {FUNCTION}()")
    else:
        _rebuild_sqlite_tables(add=False)
        return
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("updated_at")


def _rebuild_sqlite_tables(*, add: bool) -> None:
    """SQLite cannot ADD COLUMN with a non-constant default, so each table is rebuilt, which
    drops it first: SQLite's own procedure for that turns foreign keys off outside the
    transaction, rebuilds, checks every foreign key, then turns them on again."""
    bind = op.get_bind()
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys=OFF")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
    for table in TABLES:
        with op.batch_alter_table(table, recreate="always") as batch_op:
            if add:
                batch_op.add_column(updated_at())
            else:
                batch_op.drop_column("updated_at")
    broken = bind.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        raise RuntimeError(f"foreign keys broken by the rebuild: {broken[:5]}")
    bind.exec_driver_sql("COMMIT")
    bind.exec_driver_sql("PRAGMA foreign_keys=ON")
    bind.exec_driver_sql("BEGIN IMMEDIATE")
