"""race entries keep each racer's chip time beside the gun time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 02:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("race_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("chip_s", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("race_entries", schema=None) as batch_op:
        batch_op.drop_column("chip_s")
