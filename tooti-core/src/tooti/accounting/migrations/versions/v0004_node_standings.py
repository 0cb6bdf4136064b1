"""Node standings and check verdicts, shared by the gateways of one store.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create ``node_standings`` (one row per node) and ``node_audits`` (one row per verdict)."""
    op.create_table(
        "node_standings",
        sa.Column("peer_id", sa.String(128), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("since", sa.Float, nullable=False),
        sa.Column("quarantined_until", sa.Float, nullable=True),
        sa.Column("checks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("corroborated", sa.Integer, nullable=False, server_default="0"),
        sa.Column("corroborated_in_row", sa.Integer, nullable=False, server_default="0"),
        sa.Column("reputation_good", sa.Float, nullable=False, server_default="0"),
        sa.Column("reputation_bad", sa.Float, nullable=False, server_default="0"),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
    )
    op.create_index("ix_node_standings_updated", "node_standings", ["updated_at"])
    op.create_table(
        "node_audits",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("peer_id", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(500), nullable=False),
        sa.Column("gateway", sa.String(128), nullable=False),
    )
    op.create_index("ix_node_audits_peer_at", "node_audits", ["peer_id", "at"])
    op.create_index("ix_node_audits_at", "node_audits", ["at"])


def downgrade() -> None:
    """Drop both tables."""
    op.drop_index("ix_node_audits_at", "node_audits")
    op.drop_index("ix_node_audits_peer_at", "node_audits")
    op.drop_table("node_audits")
    op.drop_index("ix_node_standings_updated", "node_standings")
    op.drop_table("node_standings")
