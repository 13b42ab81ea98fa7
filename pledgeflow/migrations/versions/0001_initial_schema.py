"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 06:08:42.525899
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import SchemaItem

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# The id type of every key column: bigint, but INTEGER on SQLite, whose rowid alias it must be.
ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _id() -> sa.Column[int]:
    """The table's identity primary key column."""
    return sa.Column("id", ID_TYPE, sa.Identity(always=False), nullable=False)


def _ref(name: str, *, nullable: bool = False) -> sa.Column[int]:
    """A column holding another table's id."""
    return sa.Column(name, ID_TYPE, nullable=nullable)


def _fk(column: str, target: str, name: str) -> sa.ForeignKeyConstraint:
    """`column` references `target.id`, under the constraint name the models give it."""
    return sa.ForeignKeyConstraint([column], [f"{target}.id"], name=op.f(name))


def _status() -> sa.Column[str]:
    """An upload's or a chunk's state (DESIGN's state machine), PENDING when created."""
    return sa.Column(
        "status",
        sa.Enum("PENDING", "PROCESSING", "COMPLETED", "FAILED", name="upload_status"),
        server_default="PENDING",
        nullable=False,
    )


def _counter(name: str) -> sa.Column[int]:
    """A count that starts at zero."""
    return sa.Column(name, sa.Integer(), server_default="0", nullable=False)


def _created_at() -> sa.Column[datetime]:
    """When the row was inserted, as the database's clock says."""
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
    )


def _texts(*names: str) -> list[sa.Column[str]]:
    """Optional text columns, in this order."""
    return [sa.Column(name, sa.Text(), nullable=True) for name in names]


def _moment(name: str) -> sa.Column[datetime]:
    """A time that may not have come yet."""
    return sa.Column(name, sa.DateTime(timezone=True), nullable=True)


# The columns indexed, per table (each index named by the models' convention).
INDEXES: dict[str, list[list[str]]] = {
    "csv_upload": [["project_id"]],
    "csv_upload_chunk": [["upload_id", "status"]],
    "pledge": [["backer_id"], ["product_id"], ["upload_id"]],
    "survey": [["backer_id"]],
    "inventory": [["product_id"]],
}


def _index_name(table: str, columns: list[str]) -> str:
    return f"ix_{table}_{'_'.join(columns)}"


def _create_table(name: str, *items: SchemaItem) -> None:
    """The table `name` with an id primary key, `items`, and its INDEXES."""
    op.create_table(name, _id(), *items, sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{name}")))
    if name in INDEXES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            for columns in INDEXES[name]:
                batch_op.create_index(batch_op.f(_index_name(name, columns)), columns, unique=False)


def _drop_table(name: str) -> None:
    """The table `name` and its INDEXES, gone."""
    if name in INDEXES:
        with op.batch_alter_table(name, schema=None) as batch_op:
            for columns in reversed(INDEXES[name]):
                batch_op.drop_index(batch_op.f(_index_name(name, columns)))
    op.drop_table(name)


def upgrade() -> None:
    _create_table(
        "backer",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        *_texts("name", "phone", "country", "external_id"),
        sa.Column("source_upload_id", sa.BigInteger(), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.UniqueConstraint("shop", "email", name=op.f("uq_backer_shop_email")),
    )
    _create_table(
        "project",
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        _created_at(),
        sa.UniqueConstraint("shop", "name", name=op.f("uq_project_shop_name")),
    )
    _create_table(
        "csv_upload",
        _ref("project_id"),
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=True),
        _status(),
        _counter("total_rows"),
        _counter("total_chunks"),
        _counter("completed_chunks"),
        _counter("failed_chunks"),
        _counter("imported_rows"),
        _counter("rejected_rows"),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        _created_at(),
        _moment("started_at"),
        _moment("completed_at"),
        _fk("project_id", "project", "fk_csv_upload_project_id_project"),
    )
    _create_table(
        "product",
        _ref("project_id"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.CheckConstraint("kind IN ('reward', 'addon', 'item')", name=op.f("ck_product_kind")),
        _fk("project_id", "project", "fk_product_project_id_project"),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_product_project_id_name")),
    )
    _create_table(
        "csv_upload_chunk",
        _ref("upload_id"),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("first_row", sa.Integer(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        _status(),
        _counter("attempts"),
        _counter("imported_rows"),
        _counter("rejected_rows"),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=True),
        _moment("started_at"),
        _moment("completed_at"),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["csv_upload.id"],
            name=op.f("fk_csv_upload_chunk_upload_id_csv_upload"),
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint(
            "upload_id", "chunk_index", name=op.f("uq_csv_upload_chunk_upload_id_chunk_index")
        ),
    )
    _create_table(
        "pledge",
        _ref("project_id"),
        sa.Column("pledge_id", sa.Text(), nullable=False),
        _ref("backer_id"),
        _ref("product_id", nullable=True),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("shipping_amount", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        _moment("pledged_at"),
        sa.Column("platform", sa.String(length=32), nullable=False),
        _ref("upload_id"),
        sa.Column("source_row", sa.Integer(), nullable=False),
        _fk("backer_id", "backer", "fk_pledge_backer_id_backer"),
        _fk("product_id", "product", "fk_pledge_product_id_product"),
        _fk("project_id", "project", "fk_pledge_project_id_project"),
        _fk("upload_id", "csv_upload", "fk_pledge_upload_id_csv_upload"),
        sa.UniqueConstraint("project_id", "pledge_id", name=op.f("uq_pledge_project_id_pledge_id")),
    )
    _create_table(
        "survey",
        _ref("pledge_id"),
        _ref("backer_id"),
        _moment("responded_at"),
        *_texts(
            *(f"shipping_{part}" for part in ("name", "address_1", "address_2", "city", "state")),
            *(f"shipping_{part}" for part in ("postal_code", "country_name", "country_code")),
            "shipping_phone",
            "delivery_notes",
        ),
        sa.Column(
            "answers", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        _fk("backer_id", "backer", "fk_survey_backer_id_backer"),
        _fk("pledge_id", "pledge", "fk_survey_pledge_id_pledge"),
        sa.UniqueConstraint("pledge_id", name=op.f("uq_survey_pledge_id")),
    )
    _create_table(
        "inventory",
        _ref("survey_id"),
        _ref("product_id"),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _fk("product_id", "product", "fk_inventory_product_id_product"),
        _fk("survey_id", "survey", "fk_inventory_survey_id_survey"),
        sa.UniqueConstraint(
            "survey_id", "product_id", name=op.f("uq_inventory_survey_id_product_id")
        ),
    )


def downgrade() -> None:
    # Each table before the tables it references: upgrade()'s order reversed.
    for name in (
        "inventory",
        "survey",
        "pledge",
        "csv_upload_chunk",
        "product",
        "csv_upload",
        "project",
        "backer",
    ):
        _drop_table(name)
    sa.Enum(name="upload_status").drop(op.get_bind(), checkfirst=True)
