"""csv_upload_chunk.claimed_by: the run that holds a chunk's claim, so it can take it back

Revision ID: 0003_claim
Revises: 0002
Create Date: 2026-12-05 08:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_claim"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("csv_upload_chunk", schema=None) as batch_op:
        batch_op.add_column(sa.Column("claimed_by", sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("csv_upload_chunk", schema=None) as batch_op:
        batch_op.drop_column("claimed_by")
