"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-29 06:08:42.525899
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

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


def upgrade() -> None:
    op.create_table(
        "backer",
        _id(),
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("country", sa.Text(), nullable=True),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("source_upload_id", sa.BigInteger(), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backer")),
        sa.UniqueConstraint("shop", "email", name=op.f("uq_backer_shop_email")),
    )
    op.create_table(
        "project",
        _id(),
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project")),
        sa.UniqueConstraint("shop", "name", name=op.f("uq_project_shop_name")),
    )
    op.create_table(
        "csv_upload",
        _id(),
        _ref("project_id"),
        sa.Column("shop", sa.String(length=255), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("platform", sa.String(length=32), nullable=True),
        sa.Column(
            "status",
            sa.Enum("PENDING", "PROCESSING", "COMPLETED", "FAILED", name="upload_status"),
            server_default="PENDING",
            nullable=False,
        ),
        sa.Column("total_rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("total_chunks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completed_chunks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("failed_chunks", sa.Integer(), server_default="0", nullable=False),
        sa.Column("imported_rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rejected_rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("flow_run_id", sa.String(length=64), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        _fk("project_id", "project", "fk_csv_upload_project_id_project"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csv_upload")),
    )
    with op.batch_alter_table("csv_upload", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_csv_upload_project_id"), ["project_id"], unique=False)

    op.create_table(
        "product",
        _id(),
        _ref("project_id"),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("price", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.CheckConstraint("kind IN ('reward', 'addon', 'item')", name=op.f("ck_product_kind")),
        _fk("project_id", "project", "fk_product_project_id_project"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_product_project_id_name")),
    )
    op.create_table(
        "csv_upload_chunk",
        _id(),
        _ref("upload_id"),
        sa.Column("chunk_index", sa.Integer(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("first_row", sa.Integer(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column(
            "status",
            sa.Enum("PENDING", "PROCESSING", "COMPLETED", "FAILED", name="upload_status"),
            server_default="PENDING",
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("imported_rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("rejected_rows", sa.Integer(), server_default="0", nullable=False),
        sa.Column("errors", sa.JSON(), nullable=True),
        sa.Column("stats", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["upload_id"],
            ["csv_upload.id"],
            name=op.f("fk_csv_upload_chunk_upload_id_csv_upload"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_csv_upload_chunk")),
        sa.UniqueConstraint(
            "upload_id", "chunk_index", name=op.f("uq_csv_upload_chunk_upload_id_chunk_index")
        ),
    )
    with op.batch_alter_table("csv_upload_chunk", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_csv_upload_chunk_upload_id_status"),
            ["upload_id", "status"],
            unique=False,
        )

    op.create_table(
        "pledge",
        _id(),
        _ref("project_id"),
        sa.Column("pledge_id", sa.Text(), nullable=False),
        _ref("backer_id"),
        _ref("product_id", nullable=True),
        sa.Column("amount", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("shipping_amount", sa.Numeric(precision=12, scale=2), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("status", sa.Text(), nullable=True),
        sa.Column("pledged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("platform", sa.String(length=32), nullable=False),
        _ref("upload_id"),
        sa.Column("source_row", sa.Integer(), nullable=False),
        _fk("backer_id", "backer", "fk_pledge_backer_id_backer"),
        _fk("product_id", "product", "fk_pledge_product_id_product"),
        _fk("project_id", "project", "fk_pledge_project_id_project"),
        _fk("upload_id", "csv_upload", "fk_pledge_upload_id_csv_upload"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pledge")),
        sa.UniqueConstraint("project_id", "pledge_id", name=op.f("uq_pledge_project_id_pledge_id")),
    )
    with op.batch_alter_table("pledge", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pledge_backer_id"), ["backer_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pledge_product_id"), ["product_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pledge_upload_id"), ["upload_id"], unique=False)

    op.create_table(
        "survey",
        _id(),
        _ref("pledge_id"),
        _ref("backer_id"),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("shipping_name", sa.Text(), nullable=True),
        sa.Column("shipping_address_1", sa.Text(), nullable=True),
        sa.Column("shipping_address_2", sa.Text(), nullable=True),
        sa.Column("shipping_city", sa.Text(), nullable=True),
        sa.Column("shipping_state", sa.Text(), nullable=True),
        sa.Column("shipping_postal_code", sa.Text(), nullable=True),
        sa.Column("shipping_country_name", sa.Text(), nullable=True),
        sa.Column("shipping_country_code", sa.Text(), nullable=True),
        sa.Column("shipping_phone", sa.Text(), nullable=True),
        sa.Column("delivery_notes", sa.Text(), nullable=True),
        sa.Column(
            "answers", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=True
        ),
        _fk("backer_id", "backer", "fk_survey_backer_id_backer"),
        _fk("pledge_id", "pledge", "fk_survey_pledge_id_pledge"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey")),
        sa.UniqueConstraint("pledge_id", name=op.f("uq_survey_pledge_id")),
    )
    with op.batch_alter_table("survey", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_survey_backer_id"), ["backer_id"], unique=False)

    op.create_table(
        "inventory",
        _id(),
        _ref("survey_id"),
        _ref("product_id"),
        sa.Column("quantity", sa.Integer(), nullable=False),
        _fk("product_id", "product", "fk_inventory_product_id_product"),
        _fk("survey_id", "survey", "fk_inventory_survey_id_survey"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inventory")),
        sa.UniqueConstraint(
            "survey_id", "product_id", name=op.f("uq_inventory_survey_id_product_id")
        ),
    )
    with op.batch_alter_table("inventory", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_inventory_product_id"), ["product_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("inventory", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_inventory_product_id"))

    op.drop_table("inventory")
    with op.batch_alter_table("survey", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_survey_backer_id"))

    op.drop_table("survey")
    with op.batch_alter_table("pledge", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pledge_upload_id"))
        batch_op.drop_index(batch_op.f("ix_pledge_product_id"))
        batch_op.drop_index(batch_op.f("ix_pledge_backer_id"))

    op.drop_table("pledge")
    with op.batch_alter_table("csv_upload_chunk", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_csv_upload_chunk_upload_id_status"))

    op.drop_table("csv_upload_chunk")
    op.drop_table("product")
    with op.batch_alter_table("csv_upload", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_csv_upload_project_id"))

    op.drop_table("csv_upload")
    op.drop_table("project")
    op.drop_table("backer")
    sa.Enum(name="upload_status").drop(op.get_bind(), checkfirst=True)
