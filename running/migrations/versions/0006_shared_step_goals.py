"""shared step goals, their members and the periods they were reached in

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 02:25:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "step_goals",
        sa.Column("goal_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("period", sa.String(length=8), nullable=False),
        sa.Column("target", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("goal_id", name=op.f("pk_step_goals")),
    )
    op.create_table(
        "step_goal_members",
        sa.Column("goal_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("goal_id", "user_id", name=op.f("pk_step_goal_members")),
    )
    with op.batch_alter_table("step_goal_members", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_step_goal_members_user_id"), ["user_id"], unique=False)
    op.create_table(
        "step_goal_reached",
        sa.Column("goal_id", sa.Uuid(), nullable=False),
        sa.Column("period_start", sa.Date(), nullable=False),
        sa.Column("reached_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("goal_id", "period_start", name=op.f("pk_step_goal_reached")),
    )


def downgrade() -> None:
    op.drop_table("step_goal_reached")
    with op.batch_alter_table("step_goal_members", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_step_goal_members_user_id"))
    op.drop_table("step_goal_members")
    op.drop_table("step_goals")
