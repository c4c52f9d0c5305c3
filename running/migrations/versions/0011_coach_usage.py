"""the coach's partner budget, shared by every replica

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 05:20:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "coach_usage",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("scope", sa.String(length=40), nullable=False),
        sa.Column("questions", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "scope", name=op.f("pk_coach_usage")),
    )


def downgrade() -> None:
    op.drop_table("coach_usage")
