"""friend codes on runner profiles, and the day's misses per member

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30 12:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runner_profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("friend_code", sa.String(length=10), nullable=True))
        batch_op.create_unique_constraint(batch_op.f("uq_runner_profiles_friend_code"), ["friend_code"])
    op.create_table(
        "friend_code_misses",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("misses", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", name=op.f("pk_friend_code_misses")),
    )


def downgrade() -> None:
    op.drop_table("friend_code_misses")
    with op.batch_alter_table("runner_profiles", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_runner_profiles_friend_code"), type_="unique")
        batch_op.drop_column("friend_code")
