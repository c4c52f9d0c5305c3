"""imported runs have a fingerprint; runs keep refusals, laps and pauses; runner profiles

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 02:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refused", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("laps", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("pauses", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("fingerprint", sa.String(length=64), nullable=True))
        batch_op.create_index("ux_runs_user_fingerprint", ["user_id", "fingerprint"], unique=True)
        batch_op.create_index("ix_runs_status_updated", ["status", "updated_at"], unique=False)
    op.create_table(
        "runner_profiles",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("display_name", sa.String(length=40), nullable=True),
        sa.Column("max_hr", sa.Integer(), nullable=True),
        sa.Column("resting_hr", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_runner_profiles")),
    )


def downgrade() -> None:
    op.drop_table("runner_profiles")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status_updated")
        batch_op.drop_index("ux_runs_user_fingerprint")
        batch_op.drop_column("fingerprint")
        batch_op.drop_column("pauses")
        batch_op.drop_column("laps")
        batch_op.drop_column("refused")
