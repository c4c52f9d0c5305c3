"""outings carry invitations (answers, expiry) and their start

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 02:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("invites", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("invite_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outings", schema=None) as batch_op:
        batch_op.drop_column("started_at")
        batch_op.drop_column("invite_expires_at")
        batch_op.drop_column("invites")
