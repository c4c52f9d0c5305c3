"""password reset request time, for the per-account throttle

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 03:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("requested_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("password_resets", schema=None) as batch_op:
        batch_op.drop_column("requested_at")
