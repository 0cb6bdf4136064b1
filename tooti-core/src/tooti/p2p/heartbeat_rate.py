"""A per-peer heartbeat rate limit: one flooding peer must not cost the gateway its CPU.

A node publishes one heartbeat per interval. Each signer gets a token bucket that allows a small
burst and a steady rate of twice that (at least one a second), so an honest node restarting or
with a shorter interval passes and a peer publishing hundreds a second is cut off before its
heartbeats are decoded. Keys are the raw signer bytes of the gossipsub message, so the check costs
a dict lookup and a few float operations (no base58, no JSON).

Dropping excess heartbeats still costs the receiver its read, decryption and protobuf parse of
each one, so a signer whose refusals pile up is reported as *flooding*
(:meth:`HeartbeatRateLimit.flooding`) and the runtime bans it (``p2p/peer_bans.py``). Refusals
count into a score that halves every second, and :data:`FLOOD_SCORE` (20) takes a burst of twenty
refusals or more than about fourteen a second kept up: a flooder gets there in a fraction of a
second, while a node that merely sends faster than this gateway allows (an operator who set a
shorter heartbeat interval: twice the allowed rate is one refusal a second, a score of about 2)
is rate-limited as before and never banned.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

__all__ = ["BURST", "FLOOD_SCORE", "HeartbeatRateLimit"]

BURST = 5
"""Heartbeats one peer may send back to back."""
FLOOD_SCORE = 20.0
"""Refusal score (each refusal adds 1, the score halves every second) at which a signer is flooding.

Well under the hundred refusals after which gossipsub's score gate (``libp2p_host.score_params``)
stops passing a flooder's messages to the validator (past it the score would stop growing)."""
_MAX_TRACKED = 50_000
"""Peers remembered at once; past it, peers whose bucket is full again are forgotten."""


class HeartbeatRateLimit:
    """Token buckets keyed by signer.

    Args:
        interval_sec: the heartbeat interval; the steady rate is ``max(2 / interval_sec, 1)`` per second.
        burst: bucket size.
        clock: monotonic clock in seconds (tests inject one).
    """

    def __init__(self, interval_sec: float, *, burst: int = BURST, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = max(2.0 / interval_sec, 1.0)
        self.burst = float(burst)
        self._clock = clock
        self._buckets: dict[Hashable, list[float]] = {}
        """Per signer: ``[tokens, last seen, refusal score, 1.0 once reported as flooding]``."""

    def allow(self, peer: Hashable) -> bool:
        """Take one token from ``peer``'s bucket; ``False`` when it is empty (the message is dropped)."""
        now = self._clock()
        bucket = self._buckets.get(peer)
        if bucket is None:
            if len(self._buckets) >= _MAX_TRACKED:
                self._forget_idle(now)
                if len(self._buckets) >= _MAX_TRACKED:
                    return False  # that many active senders at once is itself an attack
            self._buckets[peer] = [self.burst - 1.0, now, 0.0, 0.0]
            return True
        elapsed = now - bucket[1]
        tokens = min(self.burst, bucket[0] + elapsed * self.rate)
        bucket[1] = now
        if bucket[2]:
            bucket[2] *= 0.5**elapsed
            if bucket[2] < 1.0:
                bucket[3] = 0.0  # the episode is over: a later one is reported again
        if tokens < 1.0:
            bucket[0] = tokens
            bucket[2] += 1.0
            return False
        bucket[0] = tokens - 1.0
        return True

    def flooding(self, peer: Hashable) -> bool:
        """``True`` once per episode: when ``peer``'s refusal score first reaches :data:`FLOOD_SCORE`."""
        bucket = self._buckets.get(peer)
        if bucket is None or bucket[2] < FLOOD_SCORE or bucket[3]:
            return False
        bucket[3] = 1.0
        return True

    def _forget_idle(self, now: float) -> None:
        """Drop peers whose bucket has refilled: forgetting them changes nothing."""
        refill = self.burst / self.rate
        for peer in [p for p, (_, at, *_) in self._buckets.items() if now - at >= refill]:
            del self._buckets[peer]

    def __len__(self) -> int:
        return len(self._buckets)
