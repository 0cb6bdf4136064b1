"""One reputation score per node, from evidence that fades with time.

The score is the mean of a Beta distribution over "this node answers correctly": good and bad
evidence (canary passes and failures, observed request successes and failures, each with a weight)
are added to a prior of one of each, and both decay exponentially with ``half_life_s``. A new node
scores 0.5; a node that failed a canary (weight 5) drops to about 0.14 and climbs back only with
new good evidence or as the failure fades. Reads are lazy (the decay is applied when the score is
asked for), so nothing runs in the background and a read is a few arithmetic operations.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Reputation"]


class _Evidence:
    __slots__ = ("at", "bad", "good")

    def __init__(self, at: float) -> None:
        self.good = 0.0
        self.bad = 0.0
        self.at = at


class Reputation:
    """Decaying good/bad evidence per peer.

    Args:
        half_life_s: after this long, old evidence weighs half as much.
        clock: monotonic clock (tests).
    """

    def __init__(self, half_life_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.half_life_s = half_life_s
        self._clock = clock
        self._peers: dict[str, _Evidence] = {}

    def _decayed(self, peer_id: str) -> _Evidence:
        now = self._clock()
        e = self._peers.get(peer_id)
        if e is None:
            e = self._peers[peer_id] = _Evidence(now)
        elif now > e.at:
            factor = 0.5 ** ((now - e.at) / self.half_life_s)
            e.good *= factor
            e.bad *= factor
            e.at = now
        return e

    def good(self, peer_id: str, weight: float = 1.0) -> None:
        """Add evidence that ``peer_id`` answers correctly."""
        self._decayed(peer_id).good += weight

    def bad(self, peer_id: str, weight: float = 1.0) -> None:
        """Add evidence that ``peer_id`` fails or lies."""
        self._decayed(peer_id).bad += weight

    def score(self, peer_id: str) -> float:
        """0..1; 0.5 for a peer without evidence."""
        e = self._peers.get(peer_id)
        if e is None:
            return 0.5
        e = self._decayed(peer_id)
        return (e.good + 1.0) / (e.good + e.bad + 2.0)

    def evidence(self, peer_id: str) -> tuple[float, float]:
        """The peer's good and bad evidence as of now (decayed), for the store."""
        if peer_id not in self._peers:
            return 0.0, 0.0
        e = self._decayed(peer_id)
        return e.good, e.bad

    def restore(self, peer_id: str, good: float, bad: float, age_s: float = 0.0) -> None:
        """Replace the peer's evidence with stored values written ``age_s`` ago (decayed on the way)."""
        factor = 0.5 ** (max(age_s, 0.0) / self.half_life_s)
        e = self._peers[peer_id] = _Evidence(self._clock())
        e.good, e.bad = max(good, 0.0) * factor, max(bad, 0.0) * factor

    def __len__(self) -> int:
        return len(self._peers)

    def forget_except(self, live: set[str]) -> None:
        """Drop peers that left (bounded memory)."""
        for peer in [p for p in self._peers if p not in live]:
            del self._peers[peer]
