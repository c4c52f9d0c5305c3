"""login lockout per account and source address

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 02:45:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _throttle_table(*key: str) -> None:
    # Throttle rows are short-lived counters: recreating the table loses at most 15
    # minutes of failure counts, which is simpler and safer than migrating a primary key.
    columns = [
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
    ]
    if "source" in key:
        columns.insert(1, sa.Column("source", sa.String(length=64), nullable=False))
    op.create_table("login_throttle", *columns, sa.PrimaryKeyConstraint(*key, name=op.f("pk_login_throttle")))


def upgrade() -> None:
    op.drop_table("login_throttle")
    _throttle_table("email", "source")


def downgrade() -> None:
    op.drop_table("login_throttle")
    _throttle_table("email")
