"""What this gateway has seen of each node, measured passively on real requests.

Routing must never add a network round trip, so the gateway learns from the traffic it already
sends: time to first token (an exponential moving average), how many requests it has in flight per
node, recent failures and a cooldown after a failure. All of it lives in memory and is read without
I/O when building candidates.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["FAILURE_WINDOW_S", "NodeStats", "Observations"]

_EMA_ALPHA = 0.3
FAILURE_WINDOW_S = 60.0


class NodeStats:
    """Mutable per-node counters; only :class:`Observations` writes them.

    ``version`` grows with every change that routing sees, so a prepared routing candidate is rebuilt
    only when it is out of date (``tooti.gateway.candidates``). ``reputation`` (0..1) is the
    trust layer's score of the node; 1.0 until something lowers it.
    """

    __slots__ = (
        "cooldown_until",
        "failures",
        "in_flight",
        "last_error",
        "reputation",
        "served",
        "tokens_per_s",
        "ttft_ms",
        "version",
    )

    def __init__(self) -> None:
        self.version = 0
        self.reputation = 1.0
        self.ttft_ms: float | None = None
        self.tokens_per_s: float | None = None
        self.in_flight = 0
        self.failures: deque[float] = deque(maxlen=64)
        self.cooldown_until = 0.0
        self.served = 0
        self.last_error = ""


def _ema(old: float | None, new: float) -> float:
    return new if old is None else old + _EMA_ALPHA * (new - old)


class Observations:
    """Per-peer passive measurements with cooldowns.

    Args:
        cooldown_sec: how long a node that failed is rested (``routing.cooldown_sec``).
        clock: monotonic clock, injectable for tests.
    """

    def __init__(self, cooldown_sec: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.cooldown_sec = cooldown_sec
        self._clock = clock
        self._stats: dict[str, NodeStats] = {}

    def stats(self, peer_id: str) -> NodeStats:
        """The record for ``peer_id``, created on first use."""
        s = self._stats.get(peer_id)
        if s is None:
            s = self._stats[peer_id] = NodeStats()
        return s

    def peek(self, peer_id: str) -> NodeStats | None:
        """The record for ``peer_id`` if the gateway has sent it anything."""
        return self._stats.get(peer_id)

    def started(self, peer_id: str) -> None:
        """A request was sent to ``peer_id``."""
        s = self.stats(peer_id)
        s.in_flight += 1
        s.version += 1

    def finished(self, peer_id: str) -> None:
        """A request to ``peer_id`` ended, however it ended."""
        s = self.stats(peer_id)
        s.in_flight = max(0, s.in_flight - 1)
        s.version += 1

    def first_token(self, peer_id: str, ttft_ms: float) -> None:
        """The first frame of an answer arrived after ``ttft_ms``."""
        s = self.stats(peer_id)
        s.ttft_ms = _ema(s.ttft_ms, ttft_ms)
        s.version += 1

    def succeeded(self, peer_id: str, completion_tokens: int | None, decode_s: float) -> None:
        """An answer completed; records decode speed when the token count is known."""
        s = self.stats(peer_id)
        s.served += 1
        if completion_tokens and decode_s > 0:
            s.tokens_per_s = _ema(s.tokens_per_s, completion_tokens / decode_s)
            s.version += 1

    def failed(self, peer_id: str, reason: str, *, cooldown: bool = True) -> None:
        """A request to ``peer_id`` failed; rest the node unless the failure says nothing about it."""
        s = self.stats(peer_id)
        now = self._clock()
        s.failures.append(now)
        s.last_error = reason
        if cooldown and self.cooldown_sec > 0:
            s.cooldown_until = now + self.cooldown_sec
        s.version += 1

    def set_reputation(self, peer_id: str, reputation: float) -> None:
        """Set the trust layer's score of ``peer_id`` (clamped to 0..1); routing sees it at once."""
        s = self.stats(peer_id)
        s.reputation = min(1.0, max(0.0, reputation))
        s.version += 1

    def now(self) -> float:
        """The current time on this record's clock (cooldowns and failure windows use it)."""
        return self._clock()

    def recent_failures(self, peer_id: str) -> int:
        """Failures in the last minute."""
        s = self._stats.get(peer_id)
        if s is None:
            return 0
        horizon = self._clock() - FAILURE_WINDOW_S
        return sum(1 for t in s.failures if t >= horizon)

    def in_cooldown(self, peer_id: str) -> bool:
        """Whether ``peer_id`` is being rested."""
        s = self._stats.get(peer_id)
        return s is not None and s.cooldown_until > self._clock()

    def __len__(self) -> int:
        return len(self._stats)

    def total_in_flight(self) -> int:
        """Requests this gateway has in flight across all nodes."""
        return sum(s.in_flight for s in self._stats.values())

    def forget_except(self, live: set[str]) -> None:
        """Drop records of peers that left the registry and have nothing in flight."""
        for peer in [p for p, s in self._stats.items() if p not in live and s.in_flight == 0]:
            del self._stats[peer]
