"""Idle ``/tooti/infer`` streams kept per peer, so the next request skips opening one.

Opening a stream costs a protocol negotiation, a network round trip (about 2.6 ms of a 6 ms
request on loopback with py-libp2p 0.8.1). A stream goes back to the pool only after an answer
ended cleanly with ``Done``; anything else resets it. The node closes streams idle for 60 s, so the
pool forgets them sooner.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from collections.abc import Callable

    from libp2p.abc import INetStream

__all__ = ["StreamPool"]

IDLE_S = 20.0
MAX_IDLE_PER_PEER = 16


class StreamPool:
    """Idle streams by peer id, most recently used first.

    Args:
        idle_s: a stream idle longer than this is not reused (it is closed instead).
        max_idle_per_peer: streams beyond this are closed instead of kept.
        clock: seconds, monotonic (tests inject one).
    """

    def __init__(
        self,
        *,
        idle_s: float = IDLE_S,
        max_idle_per_peer: int = MAX_IDLE_PER_PEER,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.idle_s = idle_s
        self.max_idle_per_peer = max_idle_per_peer
        self._clock = clock
        self._idle: defaultdict[str, list[tuple[float, INetStream]]] = defaultdict(list)
        self.reused = 0

    def take(self, peer: str) -> tuple[INetStream | None, list[INetStream]]:
        """A fresh idle stream to ``peer`` (or ``None``) and the expired ones, for the caller to close."""
        idle = self._idle.get(peer)
        if not idle:
            return None, []
        deadline = self._clock() - self.idle_s
        expired = [stream for since, stream in idle if since < deadline]
        fresh = [(since, stream) for since, stream in idle if since >= deadline]
        stream = fresh.pop()[1] if fresh else None
        if fresh:
            self._idle[peer] = fresh
        else:
            del self._idle[peer]
        if stream is not None:
            self.reused += 1
        return stream, expired

    def give(self, peer: str, stream: INetStream) -> INetStream | None:
        """Keep ``stream`` for ``peer``; returns a stream to close when the peer already has enough."""
        idle = self._idle[peer]
        idle.append((self._clock(), stream))
        if len(idle) > self.max_idle_per_peer:
            return idle.pop(0)[1]
        return None

    def idle(self, peer: str) -> int:
        """How many idle streams ``peer`` has (expired ones included)."""
        return len(self._idle.get(peer, ()))
