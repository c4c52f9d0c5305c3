"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 02:34:52.868220
"""

import sqlalchemy as sa
from alembic import op

from common.migrations import create_kernel_tables, drop_append_only, drop_kernel_tables, make_append_only

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_tables()
    op.create_table(
        "access_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("attempt_id", sa.Uuid(), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("gate_id", sa.String(length=64), nullable=False),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("method", sa.String(length=10), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=False),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("model", sa.String(length=100), nullable=True),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("gate_result", sa.String(length=32), nullable=False),
        sa.Column("offline", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_access_log")),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_access_log_attempt_id")),
    )
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.create_index("ix_access_log_branch_id_id", ["branch_id", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_log_decided_at"), ["decided_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_log_member_id"), ["member_id"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
    make_append_only("audit_log")

    op.create_table(
        "face_vectors",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("embedding_space", sa.String(length=100), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_face_vectors")),
    )
    op.create_table(
        "memberships",
        sa.Column("membership_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("valid_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("identity_required", sa.Boolean(), nullable=False),
        sa.Column("identity_verified", sa.Boolean(), nullable=False),
        sa.Column("access_hours", sa.String(length=11), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("membership_id", name=op.f("pk_memberships")),
    )
    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_memberships_member_id"), ["member_id"], unique=False)

    op.create_table(
        "presence",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("branch_id", sa.String(length=64), nullable=False),
        sa.Column("inside", sa.Boolean(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gate_id", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("member_id", "branch_id", name=op.f("pk_presence")),
    )
    op.create_table(
        "used_entry_passes",
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_used_entry_passes")),
    )
    with op.batch_alter_table("used_entry_passes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_used_entry_passes_expires_at"), ["expires_at"], unique=False)

    op.create_table(
        "visit_scores",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("visits", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("last_visit_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rank_key", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_visit_scores")),
    )
    with op.batch_alter_table("visit_scores", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_visit_scores_rank_key"), ["rank_key"], unique=False)


def downgrade() -> None:
    drop_append_only("audit_log")
    with op.batch_alter_table("visit_scores", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_visit_scores_rank_key"))

    op.drop_table("visit_scores")
    with op.batch_alter_table("used_entry_passes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_used_entry_passes_expires_at"))

    op.drop_table("used_entry_passes")
    op.drop_table("presence")

    with op.batch_alter_table("memberships", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_memberships_member_id"))

    op.drop_table("memberships")
    op.drop_table("face_vectors")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))

    op.drop_table("audit_log")
    with op.batch_alter_table("access_log", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_log_member_id"))
        batch_op.drop_index(batch_op.f("ix_access_log_decided_at"))
        batch_op.drop_index("ix_access_log_branch_id_id")

    op.drop_table("access_log")
    drop_kernel_tables()
