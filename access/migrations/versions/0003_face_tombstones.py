"""face tombstones and enrolment versions

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
    with op.batch_alter_table("face_vectors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"))
    op.create_table(
        "face_tombstones",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("galleries_cleared", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_face_tombstones")),
    )
    with op.batch_alter_table("face_tombstones", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_face_tombstones_galleries_cleared"), ["galleries_cleared"], unique=False)


def downgrade() -> None:
    op.drop_table("face_tombstones")
    with op.batch_alter_table("face_vectors", schema=None) as batch_op:
        batch_op.drop_column("version")
