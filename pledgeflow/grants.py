"""Privileges of the import role: read and write pledgeflow's tables, never change the schema."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from pledgeflow.database import get_engine
from schemas.tables import Base

# What the pipeline does to its tables: read, upsert, and replace a pledge's inventory lines.
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")


class GrantError(Exception):
    """A grant refused before any privilege changed; `code` names the reason."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Granted:
    """What `grant_import_role` gave: the database, schema, tables and sequences."""

    role: str
    database: str
    schema: str
    tables: list[str]
    sequences: list[str]


def _identity_sequences(conn: Connection, schema: str, tables: list[str]) -> list[str]:
    """Names of the sequences that number the tables' identity (or serial) columns."""
    rows = conn.execute(
        text(
            "SELECT DISTINCT s.relname FROM pg_class s "
            "JOIN pg_depend d ON d.objid = s.oid AND d.classid = 'pg_class'::regclass "
            "AND d.refclassid = 'pg_class'::regclass "
            "JOIN pg_class t ON t.oid = d.refobjid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE s.relkind = 'S' AND n.nspname = :schema AND t.relname = ANY(:tables) "
            "ORDER BY s.relname"
        ),
        {"schema": schema, "tables": tables},
    )
    return [str(r[0]) for r in rows]


def grant_import_role(role: str) -> Granted:
    """Give `role` exactly what imports need on the configured PostgreSQL database.

    That is CONNECT and TEMPORARY on the database (the writers stage rows in temporary
    tables), USAGE on the schema, SELECT, INSERT, UPDATE and DELETE on each pledgeflow table,
    and USAGE and SELECT on the sequences numbering them, SELECT on `alembic_version` (commands
    check the schema's revision); any other privilege the role held on those tables is revoked.
    Ownership, and so DROP and ALTER, stays with the schema's owner. Run it as that owner,
    after `db upgrade`.
    """
    engine = get_engine()
    if engine.dialect.name != "postgresql":
        raise GrantError(
            "not_postgresql",
            "db grant needs PostgreSQL; an SQLite file has no roles to grant to",
        )
    tables = sorted(Base.metadata.tables)
    with engine.begin() as conn:
        found = conn.execute(
            text("SELECT rolsuper FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if found is None:
            raise GrantError(
                "unknown_role",
                f"role {role!r} does not exist: create it first "
                f"(CREATE ROLE {role} LOGIN PASSWORD '...'), then run db grant again",
            )
        if found[0]:
            raise GrantError(
                "superuser_role",
                f"role {role!r} is a superuser and may change the schema whatever is granted; "
                "grant to a role without SUPERUSER",
            )
        database, schema = conn.execute(text("SELECT current_database(), current_schema()")).one()
        present = set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}
            ).scalars()
        )
        missing = [t for t in tables if t not in present]
        if missing:
            raise GrantError(
                "schema_missing",
                f"tables {', '.join(missing)} do not exist: run `pledgeflow db upgrade` first",
            )
        quote = conn.dialect.identifier_preparer.quote
        who, qschema = quote(role), quote(schema)
        names = ", ".join(f"{qschema}.{quote(t)}" for t in tables)
        sequences = _identity_sequences(conn, schema, tables)
        statements = [
            f"GRANT CONNECT, TEMPORARY ON DATABASE {quote(database)} TO {who}",
            f"GRANT USAGE ON SCHEMA {qschema} TO {who}",
            f"REVOKE ALL ON TABLE {names} FROM {who}",
            f"GRANT {', '.join(TABLE_PRIVILEGES)} ON TABLE {names} TO {who}",
        ]
        if "alembic_version" in present:
            # Read only: commands check the schema's revision before they start.
            version = f"{qschema}.alembic_version"
            statements.append(f"REVOKE ALL ON TABLE {version} FROM {who}")
            statements.append(f"GRANT SELECT ON TABLE {version} TO {who}")
        if sequences:
            seqs = ", ".join(f"{qschema}.{quote(s)}" for s in sequences)
            statements.append(f"GRANT USAGE, SELECT ON SEQUENCE {seqs} TO {who}")
        for statement in statements:
            conn.exec_driver_sql(statement)
    return Granted(role=role, database=database, schema=schema, tables=tables, sequences=sequences)
