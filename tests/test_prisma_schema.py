"""The shipped Prisma schema is Alembic head's: rendered again from the suite's migrated
database it is identical, a column changed in the database alone makes it differ, and
prisma.config.ts declares every table and enum external to Prisma Migrate.

Prisma's own diff (`prisma migrate diff`) needs its native schema engine, which this machine
cannot download; Prisma Client needs none, and `prisma generate` (run by `make clients`, and so
validating the schema's syntax) runs offline when PRISMA_SCHEMA_ENGINE_BINARY names any file.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import Engine

from pledgeflow.migrations.touch import drop_touch_trigger
from pledgeflow.prisma_schema import UNMODELLED_TABLES, render
from schemas.tables import TABLES

CLIENTS = Path(__file__).resolve().parent.parent / "clients"
SCHEMA = CLIENTS / "prisma" / "schema.prisma"
CONFIG = CLIENTS / "prisma" / "prisma.config.ts"
REGENERATE = "python -m pledgeflow.prisma_schema > clients/prisma/schema.prisma"


def test_the_shipped_schema_is_what_alembic_head_renders(db: Engine) -> None:
    assert render(db) == SCHEMA.read_text(), f"clients/prisma is stale: {REGENERATE}"


def test_a_column_changed_in_the_database_alone_makes_it_differ(db: Engine) -> None:
    with db.connect() as conn, conn.begin() as transaction:
        drop_touch_trigger(conn, "pledge")
        conn.execute(text("ALTER TABLE pledge ALTER COLUMN status TYPE varchar(40)"))
        conn.execute(text("ALTER TABLE backer ADD COLUMN nickname text"))
        changed = render(conn)
        transaction.rollback()
    shipped = SCHEMA.read_text()
    assert changed != shipped
    assert "@db.VarChar(40)" in changed and "@db.VarChar(40)" not in shipped
    assert "nickname" in changed


def _listed(kind: str) -> list[str]:
    block = re.search(kind + r": \{\s*external: \[(.*?)\]", CONFIG.read_text(), re.S)
    assert block, f"prisma.config.ts has no {kind}.external"
    return re.findall(r'"([^"]+)"', block.group(1))


def test_the_config_keeps_prisma_migrate_off_every_table_and_enum(db: Engine) -> None:
    with db.connect() as conn:
        tables = conn.execute(
            text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).scalars()
        enums = conn.execute(
            text(
                "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE t.typtype = 'e' AND n.nspname = 'public'"
            )
        ).scalars()
        in_database = {f"public.{name}" for name in tables}
        enum_names = {f"public.{name}" for name in enums}
    assert set(_listed("tables")) == in_database
    assert in_database == {f"public.{name}" for name in (*TABLES, *UNMODELLED_TABLES)}
    assert set(_listed("enums")) == enum_names == {"public.upload_status", "public.product_kind"}
    assert re.search(r"externalTables: true", CONFIG.read_text())
    header = SCHEMA.read_text().split("generator", 1)[0]
    assert "Alembic owns this schema" in header
