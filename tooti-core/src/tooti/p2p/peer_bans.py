"""Temporary bans of peers that flood heartbeats: after the ban nothing they send is read.

The heartbeat rate limit drops a flooder's excess, but each dropped message was still read,
decrypted and parsed on the receiver's CPU. A signer the rate limit reports as flooding is banned
for :data:`BAN_SEC`: its messages are dropped by gossipsub before any check (py-libp2p's pubsub
blacklist), its connections are closed and new ones from it are closed on arrival, so a flood
costs the receiver one refused connection per attempt instead of one parse per message. Bans
expire so that an operator who fixed a broken node gets back in without anyone's help.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["BAN_SEC", "PeerBans"]

BAN_SEC = 600.0
"""How long a flooding peer stays banned."""


class PeerBans:
    """Banned peers (raw peer id bytes) and when each ban ends.

    Args:
        ban_sec: ban length.
        clock: monotonic clock in seconds (tests inject one).
    """

    def __init__(self, ban_sec: float = BAN_SEC, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ban_sec = ban_sec
        self.total = 0
        """Bans issued since start (for metrics)."""
        self._until: dict[bytes, float] = {}
        self._clock = clock

    def ban(self, peer: bytes) -> bool:
        """Ban ``peer`` (or extend its ban); ``True`` when it was not banned already."""
        new = not self.banned(peer)
        self._until[peer] = self._clock() + self.ban_sec
        self.total += new
        return new

    def banned(self, peer: bytes) -> bool:
        """Whether ``peer`` is banned now."""
        until = self._until.get(peer)
        return until is not None and until > self._clock()

    def expire(self) -> list[bytes]:
        """Forget bans that ended; return those peers (to lift them in libp2p too)."""
        now = self._clock()
        ended = [peer for peer, until in self._until.items() if until <= now]
        for peer in ended:
            del self._until[peer]
        return ended

    def __len__(self) -> int:
        return len(self._until)
