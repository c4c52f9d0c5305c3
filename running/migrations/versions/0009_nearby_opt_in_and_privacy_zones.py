"""runner profiles: opting in to runners nearby, and privacy zones

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 02:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runner_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("nearby_opt_in", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("privacy_zones", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runner_profiles", schema=None) as batch_op:
        batch_op.drop_column("privacy_zones")
        batch_op.drop_column("nearby_opt_in")
