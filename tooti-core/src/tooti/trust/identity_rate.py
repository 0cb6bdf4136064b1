"""How fast new node identities from one source address are let in: the cheap half of Sybil resistance.

A node identity is a key anyone can make for free, so a dishonest operator can show up as many
nodes. Votes weighted by earned standing (:mod:`tooti.trust.round_verdict`) make fresh identities
worthless in a check; this cap makes them slow to come by as well: at most ``per_window`` distinct
new identities per source address per ``window_s`` are admitted to probation, and the rest wait
(no user traffic, no canaries, so a flood of keys also cannot burn the prober's budget) until a
slot frees. An identity admitted once stays admitted; one that comes back later does not count
again while it is remembered.

The source is the address the gateway observes for the peer's libp2p connection (never one the
peer announces, which it can forge); where the network cannot tell (no hook, no direct
connection yet), the cap does not apply and that is said in the node's standing reason.
"""

from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["IdentityRate"]

_REMEMBERED = 100_000
"""Most admitted identities kept (oldest forgotten first): bounded memory under a key flood."""


class IdentityRate:
    """Admission of new identities per source address, ``per_window`` per ``window_s``.

    Args:
        per_window: identities per source per window; 0 disables the cap.
        window_s: the window's length.
        clock: monotonic clock (tests).
    """

    def __init__(self, per_window: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_window = per_window
        self.window_s = window_s
        self._clock = clock
        self._admitted: dict[str, str] = {}
        """peer id -> the source it was admitted from (insertion ordered, oldest first)."""
        self._recent: dict[str, deque[float]] = {}
        """source -> admission times within the window."""
        self.held = 0
        """Identities refused a slot so far (metrics)."""

    def admit(self, peer_id: str, source: str | None) -> float:
        """0 when ``peer_id`` may start probation now, else seconds until its source has a free slot."""
        if self.per_window == 0 or source is None or peer_id in self._admitted:
            return 0.0
        now = self._clock()
        times = self._recent.setdefault(source, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.per_window:
            self.held += 1
            return times[0] + self.window_s - now
        times.append(now)
        self._admitted[peer_id] = source
        if len(self._admitted) > _REMEMBERED:
            del self._admitted[next(iter(self._admitted))]
        if len(self._recent) > _REMEMBERED:
            self._recent = {s: t for s, t in self._recent.items() if t and t[-1] > now - self.window_s}
        return 0.0

    def source_of(self, peer_id: str) -> str | None:
        """The source an admitted identity came from (``None`` when not capped or not admitted)."""
        return self._admitted.get(peer_id)
