"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-30 02:11:50.829412
"""

import sqlalchemy as sa
from alembic import op

from common.migrations import create_kernel_tables, drop_kernel_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "branch_keywords",
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("reviews_seen", sa.Integer(), nullable=False),
        sa.Column("extracted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("branch_id", name=op.f("pk_branch_keywords")),
    )
    op.create_table(
        "branch_topics",
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("branch_id", name=op.f("pk_branch_topics")),
    )
    op.create_table(
        "branches",
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("address", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("lat", sa.Float(), nullable=False),
        sa.Column("lon", sa.Float(), nullable=False),
        sa.Column("open_24h", sa.Boolean(), nullable=False),
        sa.Column("weekly_hours", sa.JSON(), nullable=False),
        sa.Column("facilities", sa.JSON(), nullable=False),
        sa.Column("monthly_price_krw", sa.Integer(), nullable=True),
        sa.Column("day_pass_krw", sa.Integer(), nullable=True),
        sa.Column("photos_count", sa.Integer(), nullable=False),
        sa.Column("closed", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("branch_id", name=op.f("pk_branches")),
    )
    op.create_table(
        "enrichment_due",
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("branch_id", name=op.f("pk_enrichment_due")),
    )
    with op.batch_alter_table("enrichment_due", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_enrichment_due_due_at"), ["due_at"], unique=False)

    op.create_table(
        "llm_usage",
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("tokens", sa.Integer(), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", name=op.f("pk_llm_usage")),
    )
    create_kernel_tables()
    op.create_table(
        "review_stats",
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("rating_sum", sa.Integer(), nullable=False),
        sa.Column("review_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("branch_id", name=op.f("pk_review_stats")),
    )
    op.create_table(
        "reviews",
        sa.Column("review_id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("rating", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("posted_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_reviews")),
    )
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.create_index("ix_reviews_branch_posted", ["branch_id", "posted_at"], unique=False)

    op.create_table(
        "visits",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "branch_id", name=op.f("pk_visits")),
    )


def downgrade() -> None:
    op.drop_table("visits")
    with op.batch_alter_table("reviews", schema=None) as batch_op:
        batch_op.drop_index("ix_reviews_branch_posted")

    op.drop_table("reviews")
    op.drop_table("review_stats")
    drop_kernel_tables()
    op.drop_table("llm_usage")
    with op.batch_alter_table("enrichment_due", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_enrichment_due_due_at"))

    op.drop_table("enrichment_due")
    op.drop_table("branches")
    op.drop_table("branch_topics")
    op.drop_table("branch_keywords")
