"""face enrolment version

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 02:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("face_enrollments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("face_enrollments", schema=None) as batch_op:
        batch_op.drop_column("version")
