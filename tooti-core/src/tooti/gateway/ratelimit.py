"""A per-client token bucket: ``rate_limit_rpm`` requests per minute with bursts up to the same number."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["RateLimiter"]

_MAX_CLIENTS = 10_000


class RateLimiter:
    """In-memory token buckets keyed by client identity (API key hash or address).

    Args:
        rpm: requests per minute per client; 0 disables the limit.
        clock: monotonic clock, injectable for tests.
    """

    def __init__(self, rpm: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rpm = rpm
        self._rate = rpm / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, client: str) -> float:
        """Take one request for ``client``; return 0 if allowed, else seconds until one is."""
        if self.rpm <= 0:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.get(client, (float(self.rpm), now))
        tokens = min(float(self.rpm), tokens + (now - at) * self._rate)
        if tokens >= 1.0:
            self._remember(client, tokens - 1.0, now)
            return 0.0
        self._remember(client, tokens, now)
        return (1.0 - tokens) / self._rate

    def _remember(self, client: str, tokens: float, now: float) -> None:
        if len(self._buckets) >= _MAX_CLIENTS and client not in self._buckets:
            # Full buckets carry no information: dropping them forgets nothing that matters.
            full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self._rate >= self.rpm]
            for k in full or list(self._buckets)[: _MAX_CLIENTS // 10]:
                del self._buckets[k]
        self._buckets[client] = (tokens, now)

    @staticmethod
    def retry_after_header(seconds: float) -> str:
        """``Retry-After`` value: whole seconds, at least 1."""
        return str(max(1, math.ceil(seconds)))
