"""branch photos uploaded from the console

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 09:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "branch_photos",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("content_type", sa.String(length=20), nullable=False),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("uploaded_by", sa.Uuid(), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_branch_photos")),
        sa.UniqueConstraint("key", name=op.f("uq_branch_photos_key")),
    )
    op.create_index(op.f("ix_branch_photos_branch_id"), "branch_photos", ["branch_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_branch_photos_branch_id"), table_name="branch_photos")
    op.drop_table("branch_photos")
