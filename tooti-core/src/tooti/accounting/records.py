"""Plain records the store hands out and takes in (no SQLAlchemy types leak past the store)."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["BudgetKind", "KeyRecord", "Settlement", "UsageRow"]

BudgetKind = Literal["money", "tokens"]


class KeyRecord(msgspec.Struct, kw_only=True, frozen=True):
    """One API key as stored: never the key itself, only its hash and a short prefix to recognise it."""

    id: str
    name: str | None
    key_hash: str
    prefix: str
    created_at: float
    updated_at: float
    revoked_at: float | None = None
    expires_at: float | None = None
    budget_kind: BudgetKind | None = None
    budget: float | None = None
    spent: float = 0.0
    reserved: float = 0.0
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] = ()
    last_used_at: float | None = None

    @property
    def metered(self) -> bool:
        """Whether requests with this key need the store before routing (a budget or a shared limit)."""
        return self.budget is not None or self.rpm is not None or self.tpm is not None

    def remaining(self) -> float | None:
        """Budget left after spend and open reservations (``None`` = unlimited)."""
        if self.budget is None:
            return None
        return max(0.0, self.budget - self.spent - self.reserved)

    def usable(self, now: float) -> bool:
        """Not revoked and not expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


class UsageRow(msgspec.Struct, kw_only=True):
    """One finished (or failed) request, as written to ``usage``."""

    request_id: str
    at: float
    key_id: str | None
    model: str
    peer_id: str | None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    ttft_ms: float | None = None
    duration_ms: float = 0.0
    status: str = "ok"
    failovers: int = 0
    receipt: str | None = None
    receipt_mismatch: bool | None = None


class Settlement(msgspec.Struct, kw_only=True):
    """What a finished request does to its key: close its reservation, add its spend and tokens."""

    key_id: str
    reservation_id: str | None
    reserved: float
    spent: float
    tokens: int
    at: float
    count_tokens: bool = False
    """Add ``tokens`` to the key's rate window (only keys with a tpm limit need it)."""
