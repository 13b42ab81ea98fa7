"""The Prisma schema of pledgeflow's tables, rendered from a database migrated by Alembic.

`clients/prisma/schema.prisma` is this module's output for a database at Alembic head
(`python -m pledgeflow.prisma_schema > clients/prisma/schema.prisma`, with
`PLEDGEFLOW_DATABASE_URL` naming such a PostgreSQL database); tests/test_prisma_schema.py
renders it again from the suite's migrated database and fails on any difference.

Prisma's conventions: models and enums in PascalCase (`CsvUpload`, `UploadStatus`), fields in
camelCase, each mapped to its table, column or label (`@@map`, `@map`); relation fields named
after what they hold (`upload`, plural lists such as `chunks`, `pledges`); constraint names kept
(`map:`). Timestamps default to the database's `now()` (`dbgenerated`), so Prisma Client leaves
them to PostgreSQL, which keeps microseconds, instead of writing the Node clock's milliseconds.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Column, MetaData, Table, UniqueConstraint
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import sqltypes

from schemas.tables import TABLES

# Tables Prisma Migrate must leave alone without a model: Alembic's own bookkeeping.
UNMODELLED_TABLES = ("alembic_version",)
# A list relation's name where the referencing model's plural would say less.
LIST_NAMES = {("csv_upload_chunk", "upload_id"): "chunks"}
HEADER = """\
// Alembic owns this schema: pledgeflow's migrations (`pledgeflow db upgrade`) create and change
// these tables, and prisma.config.ts declares every one of them (and both enums) external, so
// Prisma Migrate never diffs, creates or drops them. Never run `prisma migrate` or
// `prisma db push` on them.
//
// Generated from a database at Alembic head by `python -m pledgeflow.prisma_schema`; do not edit
// by hand (tests/test_prisma_schema.py fails when it differs from Alembic head).
//
// Ids are BigInt (exact beyond 2^53; send them as strings), money is Decimal, and the
// timestamps default to PostgreSQL's now() with microseconds: compare them by range, not
// equality (Prisma reads them to the millisecond). `updatedAt` moves only when a row changes.

generator client {
  provider = "prisma-client"
  output   = "../typescript/src/generated/prisma"
}

datasource db {
  provider = "postgresql"
}
"""


def pascal(name: str) -> str:
    """`csv_upload_chunk` -> `CsvUploadChunk`."""
    return "".join(part.capitalize() for part in name.split("_"))


def camel(name: str) -> str:
    """`shipping_address_1` -> `shippingAddress1`."""
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


def plural(name: str) -> str:
    """The plural of a camelCase model name, as a relation field: `inventory` -> `inventories`."""
    if name.endswith("y") and name[-2:-1] not in tuple("aeiou"):
        return name[:-1] + "ies"
    return name + "s"


def enum_label_name(label: str) -> str:
    return re.sub(r"\W", "_", label).upper()


@dataclass
class Relation:
    """A foreign key, seen from both models it joins."""

    table: str
    column: str
    referred: str
    name: str
    on_delete: str
    unique: bool


def _scalar(column: Column[object]) -> tuple[str, str]:
    """The Prisma type of a column and its native-type attribute ('' for Prisma's default)."""
    kind = column.type
    if isinstance(kind, sqltypes.Enum):
        return pascal(str(kind.name)), ""
    if isinstance(kind, sqltypes.BigInteger):
        return "BigInt", ""
    if isinstance(kind, sqltypes.Integer):
        return "Int", ""
    if isinstance(kind, sqltypes.Numeric):
        return "Decimal", f"@db.Decimal({kind.precision}, {kind.scale})"
    if isinstance(kind, sqltypes.DateTime):
        precision = getattr(kind, "precision", None)
        native = "Timestamptz" if kind.timezone else "Timestamp"
        return "DateTime", f"@db.{native}({6 if precision is None else precision})"
    if isinstance(kind, postgresql.JSONB):
        return "Json", ""
    if isinstance(kind, sqltypes.JSON):
        return "Json", "@db.Json"
    if (
        isinstance(kind, sqltypes.String)
        and not isinstance(kind, sqltypes.Text)
        and kind.length is not None
    ):
        return "String", f"@db.VarChar({kind.length})"
    if isinstance(kind, sqltypes.String):
        return "String", ""
    raise ValueError(f"no Prisma type for {column.table.name}.{column.name} ({kind!r})")


def _default(column: Column[object]) -> str:
    if column.identity is not None:
        return "@default(autoincrement())"
    server_default = column.server_default
    if server_default is None:
        return ""
    expression = str(getattr(server_default, "arg", server_default))
    if expression == "now()":
        return '@default(dbgenerated("now()"))'
    if re.fullmatch(r"-?[0-9]+", expression):
        return f"@default({expression})"
    label = re.fullmatch(r"'([^']*)'::[a-z_]+", expression)
    if label and isinstance(column.type, sqltypes.Enum):
        return f"@default({enum_label_name(label.group(1))})"
    raise ValueError(f"no Prisma default for {column.table.name}.{column.name}: {expression}")


def _relations(tables: dict[str, Table]) -> list[Relation]:
    relations = []
    for table in tables.values():
        unique_columns = {
            tuple(c.name for c in constraint.columns)
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        }
        for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
            column = fk.parent.name
            relations.append(
                Relation(
                    table=table.name,
                    column=column,
                    referred=fk.column.table.name,
                    name=str(fk.constraint.name if fk.constraint is not None else ""),
                    on_delete=(fk.ondelete or "NO ACTION").upper(),
                    unique=(column,) in unique_columns,
                )
            )
    return relations


ACTIONS = {"NO ACTION": "NoAction", "CASCADE": "Cascade", "RESTRICT": "Restrict"}


def _field(name: str, kind: str, attributes: Iterable[str]) -> tuple[str, str, str]:
    return name, kind, " ".join(a for a in attributes if a)


def _model(table: Table, relations: list[Relation]) -> str:
    lines: list[tuple[str, str, str] | str] = []
    pk = table.primary_key
    pk_columns = [c.name for c in pk.columns]
    uniques = sorted(
        (
            (tuple(c.name for c in constraint.columns), str(constraint.name))
            for constraint in table.constraints
            if isinstance(constraint, UniqueConstraint)
        ),
        key=lambda item: item[1],
    )
    single_uniques = {columns: name for columns, name in uniques if len(columns) == 1}
    for column in table.columns:
        kind, native = _scalar(column)
        optional = "?" if column.nullable else ""
        attributes = []
        if pk_columns == [column.name]:
            attributes.append(f'@id(map: "{pk.name}")')
        if (column.name,) in single_uniques:
            attributes.append(f'@unique(map: "{single_uniques[(column.name,)]}")')
        attributes.append(_default(column))
        if camel(column.name) != column.name:
            attributes.append(f'@map("{column.name}")')
        attributes.append(native)
        lines.append(_field(camel(column.name), kind + optional, attributes))
    for relation in relations:
        if relation.table == table.name:
            column = table.columns[relation.column]
            field_name = camel(relation.column.removesuffix("_id"))
            action = ACTIONS[relation.on_delete]
            lines.append(
                _field(
                    field_name,
                    pascal(relation.referred) + ("?" if column.nullable else ""),
                    [
                        f"@relation(fields: [{camel(relation.column)}], references: [id], "
                        f'onDelete: {action}, onUpdate: NoAction, map: "{relation.name}")'
                    ],
                )
            )
        if relation.referred == table.name:
            model = pascal(relation.table)
            if relation.unique:
                lines.append(_field(camel(relation.table), model + "?", []))
            else:
                name = LIST_NAMES.get((relation.table, relation.column)) or plural(
                    camel(relation.table)
                )
                lines.append(_field(name, model + "[]", []))
    lines.append("")
    for columns, name in uniques:
        if len(columns) == 1:
            continue
        fields = ", ".join(camel(c) for c in columns)
        lines.append(f'  @@unique([{fields}], map: "{name}")')
    for index in sorted(table.indexes, key=lambda i: str(i.name)):
        fields = ", ".join(camel(c.name) for c in index.columns)
        kind = "@@unique" if index.unique else "@@index"
        lines.append(f'  {kind}([{fields}], map: "{index.name}")')
    lines.append(f'  @@map("{table.name}")')
    body = "\n".join(_aligned(lines))
    return f"model {pascal(table.name)} {{\n{body}\n}}\n"


def _aligned(lines: list[tuple[str, str, str] | str]) -> list[str]:
    """Field rows in three columns (name, type, attributes), as `prisma format` lays them out."""
    rows = [line for line in lines if isinstance(line, tuple)]
    name_width = max(len(row[0]) for row in rows)
    type_width = max(len(row[1]) for row in rows)
    return [
        f"  {line[0]:<{name_width}} {line[1]:<{type_width}} {line[2]}".rstrip()
        if isinstance(line, tuple)
        else line
        for line in lines
    ]


def _enum(kind: sqltypes.Enum) -> str:
    lines = []
    for label in kind.enums:
        name = enum_label_name(label)
        lines.append(f"  {name}" + (f' @map("{label}")' if name != label else ""))
    lines.append("")
    lines.append(f'  @@map("{kind.name}")')
    return f"enum {pascal(str(kind.name))} {{\n" + "\n".join(lines) + "\n}\n"


def reflect(bind: Engine | Connection) -> dict[str, Table]:
    """pledgeflow's tables as the database has them."""
    metadata = MetaData()
    metadata.reflect(bind=bind, only=list(TABLES))
    return {name: metadata.tables[name] for name in TABLES}


def render(bind: Engine | Connection) -> str:
    """The Prisma schema of the database's pledgeflow tables."""
    tables = reflect(bind)
    relations = _relations(tables)
    enums: dict[str, sqltypes.Enum] = {}
    for table in tables.values():
        for column in table.columns:
            if isinstance(column.type, sqltypes.Enum):
                enums[str(column.type.name)] = column.type
    parts = [HEADER]
    parts += [_enum(enums[name]) for name in sorted(enums)]
    parts += [_model(table, relations) for table in tables.values()]
    return "\n".join(parts)


def main() -> None:
    """Print the schema of the configured database (`PLEDGEFLOW_DATABASE_URL`)."""
    from pledgeflow.database import get_engine

    sys.stdout.write(render(get_engine()))


if __name__ == "__main__":
    main()
