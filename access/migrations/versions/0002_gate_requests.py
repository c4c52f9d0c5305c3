"""gate requests with idempotency keys

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 02:10:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_requests",
        sa.Column("gate_id", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("attempt_id", sa.Uuid(), nullable=False),
        sa.Column("decision", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gate_id", "caller", "key", name=op.f("pk_gate_requests")),
    )
    with op.batch_alter_table("gate_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gate_requests_created_at"), ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("gate_requests", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_gate_requests_created_at"))
    op.drop_table("gate_requests")
