"""identity verification

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 01:21:26.573837
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity_verified_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("identity_reference", sa.Uuid(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("identity_reference")
        batch_op.drop_column("identity_verified_at")
