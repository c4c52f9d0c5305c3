"""shoes, and which pair a run was in

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 02:35:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "shoes",
        sa.Column("shoe_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("retire_at_km", sa.Float(), nullable=False),
        sa.Column("retired", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("shoe_id", name=op.f("pk_shoes")),
    )
    with op.batch_alter_table("shoes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_shoes_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("shoe_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_runs_shoe_id"), ["shoe_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_runs_shoe_id"))
        batch_op.drop_column("shoe_id")
    with op.batch_alter_table("shoes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_shoes_user_id"))
    op.drop_table("shoes")
