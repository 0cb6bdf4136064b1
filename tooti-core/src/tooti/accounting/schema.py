"""The accounting tables as SQLAlchemy Core objects: the shape the migrations build (their head).

Times are Unix seconds as floats and amounts are floats (doubles): a budget is tokens or money in
the unit nodes price in, per 1K tokens, so doubles are exact enough, and one type behaves the same on
SQLite and PostgreSQL. The migrations in ``tooti.accounting.migrations`` must end at exactly this
shape; a test compares them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = ["api_keys", "metadata", "node_audits", "node_standings", "rate_windows", "reservations", "usage"]

metadata = MetaData()

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=True),
    Column("key_hash", String(71), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Column("expires_at", Float, nullable=True),
    Column("budget_kind", String(8), nullable=True),
    Column("budget", Float, nullable=True),
    Column("spent", Float, nullable=False, server_default="0"),
    Column("reserved", Float, nullable=False, server_default="0"),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("models", Text, nullable=True),
    Column("last_used_at", Float, nullable=True),
)

usage = Table(
    "usage",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("request_id", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("key_id", String(80), nullable=True),
    Column("model", String(200), nullable=False),
    Column("peer_id", String(80), nullable=True),
    Column("prompt_tokens", Integer, nullable=False, server_default="0"),
    Column("completion_tokens", Integer, nullable=False, server_default="0"),
    Column("cost", Float, nullable=False, server_default="0"),
    Column("ttft_ms", Float, nullable=True),
    Column("duration_ms", Float, nullable=False),
    Column("status", String(32), nullable=False),
    Column("failovers", Integer, nullable=False, server_default="0"),
    Column("receipt", Text, nullable=True),
    Column("receipt_mismatch", Boolean, nullable=True),
    Index("ix_usage_key_at", "key_id", "at"),
    Index("ix_usage_peer_at", "peer_id", "at"),
)

reservations = Table(
    "reservations",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("key_id", String(32), nullable=False),
    Column("amount", Float, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_reservations_created", "created_at"),
)

rate_windows = Table(
    "rate_windows",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("minute", BigInteger, primary_key=True),
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("tokens", BigInteger, nullable=False, server_default="0"),
)

node_standings = Table(
    "node_standings",
    metadata,
    Column("peer_id", String(128), primary_key=True),
    Column("state", String(16), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("since", Float, nullable=False),
    Column("quarantined_until", Float, nullable=True),
    Column("checks", Integer, nullable=False, server_default="0"),
    Column("failures", Integer, nullable=False, server_default="0"),
    Column("corroborated", Integer, nullable=False, server_default="0"),
    Column("corroborated_in_row", Integer, nullable=False, server_default="0"),
    Column("reputation_good", Float, nullable=False, server_default="0"),
    Column("reputation_bad", Float, nullable=False, server_default="0"),
    Column("updated_at", Float, nullable=False),
    Column("updated_by", String(128), nullable=False),
    Index("ix_node_standings_updated", "updated_at"),
)
"""Each node's standing with the gateways sharing this store (docs/security.md): one row per node,
the last verdict's writer wins, so every gateway on the store acts on every gateway's verdicts."""

node_audits = Table(
    "node_audits",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("peer_id", String(128), nullable=False),
    Column("at", Float, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("reason", String(500), nullable=False),
    Column("gateway", String(128), nullable=False),
    Index("ix_node_audits_peer_at", "peer_id", "at"),
    Index("ix_node_audits_at", "at"),
)
"""Every check verdict (pass, fail, inconclusive) with its reason; kept ``AUDIT_RETENTION_S``."""
