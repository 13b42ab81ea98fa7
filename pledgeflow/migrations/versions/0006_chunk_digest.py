"""csv_upload_chunk.digest: what a completed chunk's rows were made from, to skip it next time

A digest of the chunk's content and every input its rows depend on (pledgeflow.chunk_digest),
set when the chunk completes. A chunk of a later upload of the project with the same digest is
recognised by it, indexed, and completes without writing a row (pledgeflow.chunk_skip).
On PostgreSQL the chunk table's updated_at trigger is recreated to compare the new column too.

Revision ID: 0006_digest
Revises: 0005_updated_at
Create Date: 2026-12-05 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from pledgeflow.migrations.touch import create_touch_trigger, drop_touch_trigger

revision: str = "0006_digest"
down_revision: str | None = "0005_updated_at"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("csv_upload_chunk", schema=None) as batch_op:
        batch_op.add_column(sa.Column("digest", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_csv_upload_chunk_digest"), ["digest"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        create_touch_trigger(op.get_bind(), "csv_upload_chunk")


def downgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    if postgresql:
        drop_touch_trigger(op.get_bind(), "csv_upload_chunk")
    with op.batch_alter_table("csv_upload_chunk", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_csv_upload_chunk_digest"))
        batch_op.drop_column("digest")
    if postgresql:
        create_touch_trigger(op.get_bind(), "csv_upload_chunk")
