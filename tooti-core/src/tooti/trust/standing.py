"""Each node's standing with this gateway: on probation, trusted, or quarantined — and what routing does with it.

* **probation**: every node starts here (and returns here when its quarantine ends). It is checked
  often; while a trusted node serves the same model it gets only ``probation_share`` of requests.
  ``probation_checks`` passed checks in a row make it trusted.
* **trusted**: checked now and then (``interval_sec``, randomised).
* **quarantined**: it failed a check; it gets no user request until ``quarantine_sec`` has passed,
  then it is on probation again and re-checked.

:meth:`Standings.routable` is the filter the gateway applies to routing candidates: no I/O, one
dictionary lookup per candidate.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tooti.config.model import VerificationSection
    from tooti.routing.protocol import Candidate

__all__ = ["NodeStanding", "Standings", "State"]

State = Literal["probation", "trusted", "quarantined"]
C = TypeVar("C", bound="Candidate")


class NodeStanding:
    """Mutable per-node record; only :class:`Standings` writes it."""

    __slots__ = ("checks", "failures", "next_check", "passed_in_row", "quarantined_until", "reason", "since", "state")

    def __init__(self, now: float, first_check: float) -> None:
        self.state: State = "probation"
        self.reason = "new node: not checked yet"
        self.since = now
        self.passed_in_row = 0
        self.checks = 0
        self.failures = 0
        self.quarantined_until = 0.0
        self.next_check = first_check


class Standings:
    """Standing of every node this gateway knows.

    Args:
        section: ``gateway.verification``.
        score: the reputation of a peer (0..1), for the ``min_reputation`` filter.
        rng: randomness for probation sampling and check spacing (tests seed it).
        clock: monotonic clock (tests).
    """

    def __init__(
        self,
        section: VerificationSection,
        score: Callable[[str], float],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.section = section
        self._score = score
        self._rng = rng or random.Random()
        self._clock = clock
        self._nodes: dict[str, NodeStanding] = {}

    def _spread(self, mean: float) -> float:
        """A gap around ``mean`` (0.5x..1.5x), so checks do not come at a recognisable rhythm."""
        return mean * self._rng.uniform(0.5, 1.5)

    def get(self, peer_id: str) -> NodeStanding:
        """The node's record (created on probation); a finished quarantine turns back into probation."""
        now = self._clock()
        s = self._nodes.get(peer_id)
        if s is None:
            # The first check comes soon (0.05-0.15 s at the default interval): until then the node
            # is unjudged, and while no node of its model is trusted it may get user requests.
            s = self._nodes[peer_id] = NodeStanding(now, now + self._spread(self.section.probation_interval_sec) * 0.1)
        elif s.state == "quarantined" and now >= s.quarantined_until:
            s.state, s.since, s.passed_in_row = "probation", now, 0
            s.reason = f"re-checking after quarantine ({s.reason})"
        return s

    def state(self, peer_id: str) -> State:
        """The node's current state."""
        return self.get(peer_id).state

    def due(self, peer_id: str) -> bool:
        """Whether the node should be checked now."""
        return self.get(peer_id).next_check <= self._clock()

    def passed(self, peer_id: str) -> None:
        """The node passed one check."""
        s, now = self.get(peer_id), self._clock()
        s.checks += 1
        s.passed_in_row += 1
        if s.state == "probation" and s.passed_in_row >= self.section.probation_checks:
            s.state, s.since, s.reason = "trusted", now, f"passed {s.passed_in_row} checks"
        elif s.state == "probation":
            s.reason = f"passed {s.passed_in_row} of {self.section.probation_checks} checks"
        mean = self.section.interval_sec if s.state == "trusted" else self.section.probation_interval_sec
        s.next_check = now + self._spread(mean)

    def failed(self, peer_id: str, reason: str) -> None:
        """The node failed a check: quarantine it, with ``reason`` shown to operators."""
        s, now = self.get(peer_id), self._clock()
        s.checks += 1
        s.failures += 1
        s.passed_in_row = 0
        s.state, s.since, s.reason = "quarantined", now, reason
        s.quarantined_until = now + self.section.quarantine_sec
        s.next_check = s.quarantined_until

    def inconclusive(self, peer_id: str, reason: str) -> None:
        """A check told nothing (timeout, transport error): try again soon, no promotion."""
        s, now = self.get(peer_id), self._clock()
        s.passed_in_row = 0
        if s.state == "probation":
            s.reason = f"check inconclusive: {reason}"
        s.next_check = now + self._spread(self.section.probation_interval_sec)

    def routable(self, candidates: Sequence[C]) -> list[C]:
        """The candidates user requests may go to, in their input order.

        Quarantined nodes never. Nodes on probation only with probability ``probation_share`` while
        a trusted node is among the candidates; when none is (a gateway's own warm-up), those that
        passed a check already, else all of them (or the model would be unavailable). Nodes below
        ``min_reputation`` only when nothing better is left.
        """
        trusted = False
        kept: list[tuple[C, State]] = []
        for c in candidates:
            state = self.state(c.peer_id)
            if state == "quarantined":
                continue
            trusted = trusted or state == "trusted"
            kept.append((c, state))
        share = self.section.probation_share
        if trusted:
            out = [c for c, st in kept if st == "trusted" or self._rng.random() < share]
        else:
            # Nobody trusted yet (a gateway's own warm-up): nodes that passed a check go first.
            checked = [c for c, _ in kept if self._nodes[c.peer_id].passed_in_row > 0]
            out = checked or [c for c, _ in kept]
        floor = self.section.min_reputation
        good = [c for c in out if self._score(c.peer_id) >= floor]
        return good or out

    def table(self) -> dict[str, NodeStanding]:
        """Every record (for metrics); callers must not modify them."""
        return self._nodes

    def forget_except(self, live: set[str]) -> None:
        """Drop nodes that left; a node that returns later starts on probation again.

        Quarantined nodes are kept until their quarantine ends: leaving and coming back must not clear it.
        """
        now = self._clock()
        for peer in [p for p, s in self._nodes.items() if p not in live]:
            if self._nodes[peer].state != "quarantined" or self._nodes[peer].quarantined_until <= now:
                del self._nodes[peer]
