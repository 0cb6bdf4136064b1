"""Signed receipts on usage rows, and a flag for node/gateway token-count disagreements.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add ``usage.receipt`` (the countersigned receipt, JSON) and ``usage.receipt_mismatch``."""
    with op.batch_alter_table("usage") as batch:
        batch.add_column(sa.Column("receipt", sa.Text, nullable=True))
        batch.add_column(sa.Column("receipt_mismatch", sa.Boolean, nullable=True))


def downgrade() -> None:
    """Drop the receipt columns."""
    with op.batch_alter_table("usage") as batch:
        batch.drop_column("receipt_mismatch")
        batch.drop_column("receipt")
