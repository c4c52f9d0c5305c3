"""indexes by age on the outbox and the processed-event inbox (their retention sweeps)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 23:00:00.000000
"""

from common.migrations import create_kernel_age_indexes, drop_kernel_age_indexes

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_kernel_age_indexes()


def downgrade() -> None:
    drop_kernel_age_indexes()
