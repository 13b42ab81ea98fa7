"""The triggers that keep `updated_at` on PostgreSQL, for migrations to (re)create.

Each table's BEFORE UPDATE trigger fires only when some column other than `updated_at`
differs between the old and new row version (json compared as text), and sets `updated_at`
to now(): an UPDATE that writes the same values leaves it alone. The columns are read from
the database when the trigger is created, so a migration that adds a column to one of these
tables calls `create_touch_trigger` again for it (tests/test_updated_at.py checks every
column is covered). PostgreSQL refuses to change the type of a column a trigger's condition
names: a migration doing so drops the trigger first (`drop_touch_trigger`) and creates it again
after.

A chunk's `data` (its CSV rows, megabytes) is left out: comparing it cost ~65 ms per updated
chunk row, and nobody rewrites stored chunk data.
"""

from __future__ import annotations

from sqlalchemy import inspect
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.engine import Connection

FUNCTION = "pledgeflow_touch_updated_at"
NOT_COMPARED = {"updated_at", "csv_upload_chunk.data"}
CREATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION {FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$
"""


def trigger_name(table: str) -> str:
    """The name of `table`'s updated_at trigger."""
    return f"{table}_touch_updated_at"


def compared_columns(bind: Connection, table: str) -> list[tuple[str, bool]]:
    """`(column, is_json)` for every column of `table` whose change moves `updated_at`."""
    columns = inspect(bind).get_columns(table)
    return [
        (c["name"], isinstance(c["type"], JSON) and not isinstance(c["type"], JSONB))
        for c in columns
        if c["name"] not in NOT_COMPARED and f"{table}.{c['name']}" not in NOT_COMPARED
    ]


def drop_touch_trigger(bind: Connection, table: str) -> None:
    """Drop `table`'s updated_at trigger (before changing a column's type)."""
    bind.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger_name(table)} ON {table}")


def create_touch_trigger(bind: Connection, table: str) -> None:
    """(Re)create `table`'s updated_at trigger over its current columns."""
    columns = compared_columns(bind, table)

    def side(row: str) -> str:
        return ", ".join(
            f'{row}."{name}"' + ("::text" if is_json else "") for name, is_json in columns
        )

    drop_touch_trigger(bind, table)
    bind.exec_driver_sql(
        f"CREATE TRIGGER {trigger_name(table)} BEFORE UPDATE ON {table} FOR EACH ROW "
        f"WHEN (({side('OLD')}) IS DISTINCT FROM ({side('NEW')})) "
        f"EXECUTE FUNCTION {FUNCTION}()"
    )
