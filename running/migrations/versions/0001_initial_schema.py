"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 03:38:58.846164
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
        "friendships",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("friend_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "friend_id", name=op.f("pk_friendships")),
    )
    with op.batch_alter_table("friendships", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_friendships_friend_id"), ["friend_id"], unique=False)

    op.create_table(
        "outings",
        sa.Column("outing_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("outing_id", name=op.f("pk_outings")),
    )
    op.create_table(
        "race_entries",
        sa.Column("race_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("finish_s", sa.Float(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("race_id", "user_id", name=op.f("pk_race_entries")),
    )
    with op.batch_alter_table("race_entries", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_race_entries_user_id"), ["user_id"], unique=False)

    op.create_table(
        "races",
        sa.Column("race_id", sa.Uuid(), nullable=False),
        sa.Column("host_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("target", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("race_id", name=op.f("pk_races")),
    )
    with op.batch_alter_table("races", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_races_status"), ["status"], unique=False)

    op.create_table(
        "run_chunks",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("first_t", sa.Float(), nullable=False),
        sa.Column("points", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_chunks")),
    )
    with op.batch_alter_table("run_chunks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_run_chunks_created_at"), ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_run_chunks_run_id"), ["run_id"], unique=False)

    op.create_table(
        "runs",
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("distance_m", sa.Float(), nullable=False),
        sa.Column("moving_s", sa.Float(), nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=False),
        sa.Column("race_id", sa.Uuid(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_runs_race_id"), ["race_id"], unique=False)
        batch_op.create_index("ix_runs_user_started", ["user_id", "started_at"], unique=False)

    op.create_table(
        "share_links",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_share_links")),
    )
    with op.batch_alter_table("share_links", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_share_links_run_id"), ["run_id"], unique=False)

    op.create_table(
        "step_counts",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("device_id", sa.String(length=64), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "day", "device_id", name=op.f("pk_step_counts")),
    )
    create_kernel_tables()


def downgrade() -> None:
    drop_kernel_tables()
    op.drop_table("step_counts")
    with op.batch_alter_table("share_links", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_share_links_run_id"))

    op.drop_table("share_links")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_user_started")
        batch_op.drop_index(batch_op.f("ix_runs_race_id"))

    op.drop_table("runs")
    with op.batch_alter_table("run_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_run_chunks_run_id"))
        batch_op.drop_index(batch_op.f("ix_run_chunks_created_at"))

    op.drop_table("run_chunks")
    with op.batch_alter_table("races", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_races_status"))

    op.drop_table("races")
    with op.batch_alter_table("race_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_race_entries_user_id"))

    op.drop_table("race_entries")
    op.drop_table("outings")
    with op.batch_alter_table("friendships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_friendships_friend_id"))

    op.drop_table("friendships")
