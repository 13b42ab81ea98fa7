"""backer.external_id holds only a platform's person id: clear per-project numbers stored there

Kickstarter's 2013 `Backer Id` (also the pledge key) and BackerKit's `Service Guid` number
backers within one project; earlier imports wrote them to backer.external_id.

Revision ID: 0003v
Revises: 0003_claim
Create Date: 2026-12-05 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003v"
down_revision: str | None = "0003_claim"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A backer's external id that is one of its own pledge keys came from `Backer Id`; one of a
    # backer with only BackerKit pledges came from `Service Guid` (no other platform's mapping
    # wrote a BackerKit backer's id).
    op.execute(
        sa.text(
            """
            UPDATE backer SET external_id = NULL
            WHERE external_id IS NOT NULL
              AND (
                EXISTS (
                  SELECT 1 FROM pledge p
                  WHERE p.backer_id = backer.id AND p.pledge_id = backer.external_id
                )
                OR (
                  EXISTS (SELECT 1 FROM pledge p WHERE p.backer_id = backer.id)
                  AND NOT EXISTS (
                    SELECT 1 FROM pledge p
                    WHERE p.backer_id = backer.id AND p.platform <> 'backerkit'
                  )
                )
              )
            """
        )
    )


def downgrade() -> None:
    # The numbers cleared were never people's ids; there is nothing to restore.
    pass
