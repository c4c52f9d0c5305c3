"""read-only role for mlops' training

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 05:30:00.000000
"""

import os

from common.migrations import create_reader_role, drop_reader_grants

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# The same variables mlops connects with (SMARTGYM_MLOPS_READER_ROLE / _PASSWORD).
ROLE = os.environ.get("SMARTGYM_MLOPS_READER_ROLE", "smartgym_mlops_reader")


def upgrade() -> None:
    create_reader_role(ROLE, password_env="SMARTGYM_MLOPS_READER_PASSWORD")  # noqa: S106 - a variable name


def downgrade() -> None:
    drop_reader_grants(ROLE)
