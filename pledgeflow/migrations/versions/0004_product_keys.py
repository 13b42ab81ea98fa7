"""product keyed by (project_id, kind, product_key); kind an enum; chunks' superseded rows

Products were unique by (project_id, name), so two reward tiers with one title became one
product. Existing rows keep their ids: `product_key` is backfilled with the product's platform
id where that id names one product of its kind in its project, else with its name (unique
before), so no two existing rows can collide on the new key.

Revision ID: 0004_keys
Revises: 0003v
Create Date: 2026-12-05 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_keys"
down_revision: str | None = "0003v"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("reward", "addon", "item")
product_kind = sa.Enum(*KINDS, name="product_kind")

BACKFILL_NAMES = "UPDATE product SET product_key = name"
BACKFILL_IDS = """
UPDATE product SET product_key = external_id
WHERE external_id IS NOT NULL AND external_id <> '' AND NOT EXISTS (
    SELECT 1 FROM product q
    WHERE q.project_id = product.project_id AND q.kind = product.kind AND q.id <> product.id
      AND (q.external_id = product.external_id OR q.name = product.external_id))
"""


def upgrade() -> None:
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.add_column(sa.Column("product_key", sa.Text(), nullable=True))
        batch_op.drop_constraint(op.f("ck_product_kind"), type_="check")
    op.execute(BACKFILL_NAMES)
    op.execute(BACKFILL_IDS)
    if op.get_bind().dialect.name == "postgresql":
        product_kind.create(op.get_bind())
        op.execute(
            "ALTER TABLE product ALTER COLUMN kind TYPE product_kind USING kind::product_kind"
        )
    with op.batch_alter_table("product", schema=None) as batch_op:
        if op.get_bind().dialect.name != "postgresql":
            batch_op.alter_column(
                "kind", existing_type=sa.String(length=16), type_=product_kind, nullable=False
            )
        batch_op.alter_column("product_key", existing_type=sa.Text(), nullable=False)
        batch_op.drop_constraint(op.f("uq_product_project_id_name"), type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_product_project_id_kind_product_key"),
            ["project_id", "kind", "product_key"],
        )
    with op.batch_alter_table("csv_upload_chunk", schema=None) as batch_op:
        batch_op.add_column(sa.Column("superseded", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Back to one product per name: fails, as it must, where two products share a name."""
    with op.batch_alter_table("csv_upload_chunk", schema=None) as batch_op:
        batch_op.drop_column("superseded")
    with op.batch_alter_table("product", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_product_project_id_kind_product_key"), type_="unique")
        batch_op.create_unique_constraint(
            op.f("uq_product_project_id_name"), ["project_id", "name"]
        )
        batch_op.alter_column(
            "kind", existing_type=product_kind, type_=sa.String(length=16), nullable=False
        )
        batch_op.drop_column("product_key")
        batch_op.create_check_constraint("kind", "kind IN ('reward', 'addon', 'item')")
    if op.get_bind().dialect.name == "postgresql":
        product_kind.drop(op.get_bind())
