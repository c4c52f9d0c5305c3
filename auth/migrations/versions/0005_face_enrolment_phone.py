"""face enrolment and phone sign-up

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 01:35:25.362607
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "face_consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("text_version", sa.String(length=32), nullable=False),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("source_address", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_face_consents")),
    )
    with op.batch_alter_table("face_consents", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_face_consents_user_id"), ["user_id"], unique=False)

    op.create_table(
        "face_enrollments",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("embedding_space", sa.String(length=100), nullable=False),
        sa.Column("sealed_embedding", sa.LargeBinary(), nullable=False),
        sa.Column("enrolled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_face_enrollments")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("phone", sa.String(length=20), nullable=True))
        batch_op.alter_column("email", existing_type=sa.VARCHAR(length=254), nullable=True)
        batch_op.create_unique_constraint(batch_op.f("uq_users_phone"), ["phone"])


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_users_phone"), type_="unique")
        batch_op.alter_column("email", existing_type=sa.VARCHAR(length=254), nullable=False)
        batch_op.drop_column("phone")

    op.drop_table("face_enrollments")
    with op.batch_alter_table("face_consents", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_face_consents_user_id"))

    op.drop_table("face_consents")
