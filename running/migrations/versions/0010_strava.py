"""Strava connections and uploads

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 02:55:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "strava_links",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("athlete_id", sa.Integer(), nullable=True),
        sa.Column("access_token", sa.String(length=200), nullable=False),
        sa.Column("refresh_token", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_strava_links")),
    )
    op.create_table(
        "strava_uploads",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("upload_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=200), nullable=False),
        sa.Column("activity_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_strava_uploads")),
    )
    with op.batch_alter_table("strava_uploads", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_strava_uploads_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("strava_uploads", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_strava_uploads_user_id"))
    op.drop_table("strava_uploads")
    op.drop_table("strava_links")
