"""Each node's standing with this gateway: on probation, trusted, or quarantined — and what routing does with it.

* **probation**: every node starts here (and returns here when its quarantine ends). It is checked
  often. ``probation_checks`` *corroborated* passes in a row make it trusted: a pass counts only
  when another voice confirmed the answer (a reference node, nodes with earned weight, or — while
  nobody has any — other nodes agreeing); passing the single-node checks alone keeps it on
  probation, because a node that answers every prompt differently passes them whatever it says.
* **trusted**: checked now and then (``interval_sec``, randomised); its vote weighs with its
  earned standing (:meth:`Standings.weight`).
* **quarantined**: it failed a check; it gets no user request until ``quarantine_sec`` has passed,
  then it is on probation again and re-checked.
* A **reference** (``verification.references``) is trusted from the start and decides the checks
  it takes part in; only a definite fault (a malformed or fixed answer) quarantines it.
* A new identity whose source address is over its admission rate (:mod:`tooti.trust.identity_rate`)
  is **held**: on probation, but with no traffic and no checks until a slot frees.

:meth:`Standings.routable` is the filter the gateway applies to routing candidates: no I/O, one
dictionary lookup per candidate. It bounds what nodes not yet trusted can take, by count and by
concurrency, whatever else serves the model (see its docstring).
"""

from __future__ import annotations

import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Literal, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from tooti.config.model import VerificationSection
    from tooti.routing.protocol import Candidate
    from tooti.trust.identity_rate import IdentityRate

__all__ = ["MAX_WEIGHT", "NodeStanding", "Standings", "State", "VerdictNote"]

State = Literal["probation", "trusted", "quarantined"]
C = TypeVar("C", bound="Candidate")

MAX_WEIGHT = 10.0
"""A trusted node's vote weighs its corroborated passes, up to this: old merit cannot buy a veto."""
_RECENT_VERDICTS = 5
_PENDING_NOTES = 10_000


class VerdictNote:
    """One verdict on a node, kept for operators: when, what, why."""

    __slots__ = ("at", "kind", "outcome", "reason")

    def __init__(self, at: float, outcome: str, kind: str, reason: str) -> None:
        self.at = at
        """Unix time of the verdict."""
        self.outcome = outcome
        self.kind = kind
        self.reason = reason

    def as_dict(self) -> dict[str, Any]:
        """JSON shape for ``/v1/network/nodes``."""
        return {"at": round(self.at, 3), "outcome": self.outcome, "kind": self.kind, "reason": self.reason}


class NodeStanding:
    """Mutable per-node record; only :class:`Standings` writes it."""

    __slots__ = (
        "audited",
        "checks",
        "corroborated",
        "corroborated_in_row",
        "failures",
        "first_check_by",
        "held_until",
        "kind",
        "next_check",
        "passed_in_row",
        "quarantined_until",
        "reason",
        "recent",
        "reference",
        "since",
        "state",
    )

    def __init__(self, now: float, first_check: float) -> None:
        self.state: State = "probation"
        self.reason = "new node: not checked yet"
        self.kind = "new"
        """A short, fixed word for the reason (metrics label): new, passed, alone, outvoted, ..."""
        self.since = now
        self.passed_in_row = 0
        self.corroborated_in_row = 0
        self.corroborated = 0
        """Passes another voice confirmed, all time: the node's earned vote weight (capped)."""
        self.checks = 0
        self.failures = 0
        self.quarantined_until = 0.0
        self.next_check = first_check
        self.first_check_by = 0.0
        """While in the future, requests that only this kind of node could serve may wait for its first verdict."""
        self.held_until = 0.0
        self.reference = False
        self.audited = False
        """Whether an audit of one of its user answers passed since it last failed anything."""
        self.recent: deque[VerdictNote] = deque(maxlen=_RECENT_VERDICTS)


class Standings:
    """Standing of every node this gateway knows.

    Args:
        section: ``gateway.verification``.
        score: the reputation of a peer (0..1), for the ``min_reputation`` filter.
        rng: randomness for probation sampling and check spacing (tests seed it).
        clock: monotonic clock (tests).
        identities: the per-source admission rate of new identities (``None`` = no cap).
        source_of: the observed source address of a peer's connection, ``None`` when unknown.
    """

    def __init__(
        self,
        section: VerificationSection,
        score: Callable[[str], float],
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        identities: IdentityRate | None = None,
        source_of: Callable[[str], str | None] | None = None,
    ) -> None:
        self.section = section
        self._score = score
        self._rng = rng or random.Random()
        self._clock = clock
        self._identities = identities
        self._source_of = source_of
        self.references = frozenset(section.references)
        self.audit_gate = section.audit_new_share > 0
        """Whether a node needs a passed audit of its user answers to take more than a probation share."""
        self._nodes: dict[str, NodeStanding] = {}
        self.awaiting: dict[str, float] = {}
        """Nodes whose first check is pending, with the deadline of the wait for it (monotonic)."""
        self.dirty: set[str] = set()
        """Peers whose record changed since the last :meth:`take_dirty` (persistence)."""
        self.verdicts: dict[tuple[str, str], int] = {}
        """Verdicts so far by (outcome, kind), for metrics."""
        self.notes: deque[tuple[str, VerdictNote]] = deque(maxlen=_PENDING_NOTES)
        """Verdicts not yet written to the store (the oldest are dropped past the bound)."""

    def _spread(self, mean: float) -> float:
        """A gap around ``mean`` (0.5x..1.5x), so checks do not come at a recognisable rhythm."""
        return mean * self._rng.uniform(0.5, 1.5)

    def _new(self, peer_id: str, now: float) -> NodeStanding:
        # The first check comes soon (0.05-0.15 s at the default interval); until its verdict the node
        # is unjudged, and a request only it could serve may wait for that verdict (first_check_wait_sec).
        s = NodeStanding(now, now + self._spread(self.section.probation_interval_sec) * 0.1)
        if peer_id in self.references:
            s.reference = True
            s.state, s.kind = "trusted", "reference"
            s.reason = "reference node (gateway.verification.references)"
        elif self.section.first_check_wait_sec > 0:
            s.first_check_by = now + self.section.first_check_wait_sec
            self.awaiting[peer_id] = s.first_check_by
        self._admit(peer_id, s, now)
        self._nodes[peer_id] = s
        return s

    def get(self, peer_id: str) -> NodeStanding:
        """The node's record (created on probation); a finished quarantine turns back into probation."""
        now = self._clock()
        s = self._nodes.get(peer_id)
        if s is None:
            s = self._new(peer_id, now)
        elif s.state == "quarantined" and now >= s.quarantined_until:
            s.state, s.since, s.passed_in_row, s.corroborated_in_row = "probation", now, 0, 0
            s.reason = f"re-checking after quarantine ({s.reason})"
            s.kind = "recheck"
            self.dirty.add(peer_id)
        elif s.held_until and now >= s.held_until:
            self._admit(peer_id, s, now)
        return s

    def _admit(self, peer_id: str, s: NodeStanding, now: float) -> None:
        """Take an admission slot for a new identity from its source, or hold it until one frees."""
        if self._identities is None or s.reference:
            return
        source = self._source_of(peer_id) if self._source_of is not None else None
        wait = self._identities.admit(peer_id, source)
        if wait > 0:
            s.held_until = now + wait
            s.next_check = s.held_until
            s.kind = "held"
            s.reason = f"held: too many new identities from {source} (admitted in {wait:.0f} s)"
            self.awaiting.pop(peer_id, None)
        elif s.held_until:
            s.held_until = 0.0
            s.next_check = now
            s.kind, s.reason = "new", "new node: not checked yet"

    def state(self, peer_id: str) -> State:
        """The node's current state."""
        return self.get(peer_id).state

    def held(self, peer_id: str) -> bool:
        """Whether the node waits for an admission slot (no traffic, no checks)."""
        return self.get(peer_id).held_until > 0

    def is_reference(self, peer_id: str) -> bool:
        """Whether the operator named this node a reference."""
        return peer_id in self.references

    def weight(self, peer_id: str) -> float:
        """The node's vote in a check: its corroborated passes (at most :data:`MAX_WEIGHT`) if trusted, else 0.

        Earned standing, never head count: a fresh identity weighs nothing, so any number of them
        cannot outvote one node that has proven itself.
        """
        s = self.get(peer_id)
        if s.state != "trusted":
            return 0.0
        return min(float(s.corroborated), MAX_WEIGHT) or (1.0 if s.reference else 0.0)

    def due(self, peer_id: str) -> bool:
        """Whether the node should be checked now."""
        s = self.get(peer_id)
        return s.held_until == 0 and s.next_check <= self._clock()

    def overdue(self, peer_id: str) -> float:
        """Seconds the node's check is past due (0 when not due yet)."""
        return max(0.0, self._clock() - self.get(peer_id).next_check)

    def _note(self, peer_id: str, s: NodeStanding, outcome: str, kind: str, reason: str) -> None:
        note = VerdictNote(time.time(), outcome, kind, reason)
        s.recent.append(note)
        self.notes.append((peer_id, note))
        key = (outcome, kind)
        self.verdicts[key] = self.verdicts.get(key, 0) + 1
        self.dirty.add(peer_id)
        # Any verdict ends the wait for a first check, an inconclusive one too: waiting longer for a
        # node that errs gains nothing, and it is not proven, so it still gets no more than its share.
        s.first_check_by = 0.0
        self.awaiting.pop(peer_id, None)

    def passed(self, peer_id: str, *, corroborated: bool = True, reason: str | None = None) -> None:
        """The node passed one check; ``corroborated`` when another voice confirmed its answer."""
        s, now = self.get(peer_id), self._clock()
        s.checks += 1
        s.passed_in_row += 1
        if corroborated:
            s.corroborated += 1
            s.corroborated_in_row += 1
        if s.state == "probation" and s.corroborated_in_row >= self.section.probation_checks:
            s.state, s.since, s.kind = "trusted", now, "passed"
            s.reason = f"passed {s.corroborated_in_row} checks confirmed by other nodes"
        elif s.state == "probation" and corroborated:
            s.kind = "passed"
            s.reason = f"passed {s.corroborated_in_row} of {self.section.probation_checks} confirmed checks"
        elif s.state == "probation":
            s.kind = "alone"
            s.reason = f"passed {s.passed_in_row} checks unconfirmed: {reason or 'nobody to compare with'}"
        mean = self.section.interval_sec if s.state == "trusted" else self.section.probation_interval_sec
        s.next_check = now + self._spread(mean)
        self._note(peer_id, s, "pass", "passed" if corroborated else "alone", reason or s.reason)

    def audit_passed(self, peer_id: str) -> None:
        """An audit of one of the node's user answers passed: its canaries are no longer all it has shown."""
        s = self.get(peer_id)
        if not s.audited:
            s.audited = True
            self.dirty.add(peer_id)

    def failed(self, peer_id: str, reason: str, kind: str = "failed") -> None:
        """The node failed a check: quarantine it, with ``reason`` shown to operators."""
        s, now = self.get(peer_id), self._clock()
        s.audited = False
        s.checks += 1
        s.failures += 1
        s.passed_in_row = s.corroborated_in_row = 0
        s.state, s.since, s.reason, s.kind = "quarantined", now, reason, kind
        s.quarantined_until = now + self.section.quarantine_sec
        s.next_check = s.quarantined_until
        self._note(peer_id, s, "fail", kind, reason)

    def inconclusive(self, peer_id: str, reason: str) -> None:
        """A check told nothing (timeout, transport error): try again soon, no promotion."""
        s, now = self.get(peer_id), self._clock()
        s.passed_in_row = s.corroborated_in_row = 0
        if s.state == "probation":
            s.reason = f"check inconclusive: {reason}"
            s.kind = "inconclusive"
        s.next_check = now + self._spread(self.section.probation_interval_sec)
        self._note(peer_id, s, "inconclusive", "inconclusive", reason)

    # -- routing ---------------------------------------------------------------------------------

    def _verified(self, s: NodeStanding, gate: bool = False) -> bool:
        """Trusted, and (with ``gate``) shown honest on user traffic, not only on canaries.

        Canaries are the gateway's own requests, and a node that has read this code can tell them
        from users' (a canary evader): passing them earns a vote in checks, but, once audits can
        pass for the model, a full share of users only when an audit of its own answers to users
        passed (:mod:`tooti.trust.organic_audit`). Until then it takes a probation share, where its
        audits come from.
        """
        return s.state == "trusted" and (s.reference or s.audited or not gate)

    def _gated(self, candidates: Sequence[C]) -> bool:
        """Whether passing canaries is not enough among ``candidates``: audits are on and can pass here.

        They can once a reference serves the model or one of its nodes has passed an audit. Until
        then (a network's first audits, or backends that give no logprobs, where none ever passes)
        trusted nodes are served as without audits: holding them all to a probation share would
        only route every request to a node at random.
        """
        return self.audit_gate and any(
            c.peer_id in self.references or ((s := self._nodes.get(c.peer_id)) is not None and s.audited)
            for c in candidates
        )

    def routable(self, candidates: Sequence[C]) -> list[C]:
        """The candidates user requests may go to.

        Quarantined and held nodes never. Nodes not trusted yet together, whatever else serves:

        * while a trusted node is among the candidates: one of them (picked at random) with
          probability ``probation_share`` per request, and only while they hold fewer than
          ``probation_max_in_flight`` requests together — by count *and* concurrency;
        * while none is (a gateway's own warm-up, or a network of only unverified nodes, which must
          still serve): those that passed a confirmed check, else *one* of them picked uniformly at
          random per request — a node that answers instantly wins no more than its equal share,
          where a latency-ranking strategy would give it nearly all.

        Nodes below ``min_reputation`` only when nothing better is left.
        """
        trusted: list[C] = []
        unverified: list[C] = []
        gate = self._gated(candidates)
        for c in candidates:
            s = self.get(c.peer_id)
            if s.state == "quarantined" or s.held_until > 0:
                continue
            (trusted if self._verified(s, gate) else unverified).append(c)
        floor = self.section.min_reputation

        def above_floor(group: list[C]) -> list[C]:
            return [c for c in group if self._score(c.peer_id) >= floor] or group

        if trusted:
            out = above_floor(trusted)
            eligible = [c for c in unverified if self._score(c.peer_id) >= floor]
            if eligible and self._rng.random() < self.section.probation_share:
                busy = sum(c.in_flight for c in unverified)
                if busy < self.section.probation_max_in_flight:
                    out = [*out, self._rng.choice(eligible)]
            return out
        if not unverified:
            return []
        proven = [c for c in unverified if self._nodes[c.peer_id].corroborated_in_row > 0]
        if proven:
            return above_floor(proven)
        return [self._rng.choice(above_floor(unverified))]

    def settled(self, peer_ids: Iterable[str]) -> float:
        """Seconds a request routed to ``peer_ids`` should still wait for a first verdict (0 = go now).

        Waiting makes sense only while every node of the request is new and its first check is
        pending: once one of them is trusted or passed a confirmed check, the request goes to it.
        """
        if not self.awaiting:
            return 0.0
        now = self._clock()
        wait = 0.0
        for peer in peer_ids:
            s = self._nodes.get(peer)
            if s is None:
                continue
            if self._verified(s) or s.corroborated_in_row > 0:
                return 0.0
            if s.first_check_by > now:
                wait = max(wait, s.first_check_by - now)
        return wait

    # -- bookkeeping -----------------------------------------------------------------------------

    def table(self) -> dict[str, NodeStanding]:
        """Every record (for metrics); callers must not modify them."""
        return self._nodes

    def take_dirty(self) -> set[str]:
        """The peers changed since the last call (and forget them)."""
        out, self.dirty = self.dirty, set()
        return out

    def forget_except(self, live: set[str]) -> None:
        """Drop nodes that left; a node that returns later starts on probation again.

        Quarantined nodes are kept until their quarantine ends: leaving and coming back must not clear it.
        """
        now = self._clock()
        for peer in [p for p, s in self._nodes.items() if p not in live]:
            if self._nodes[peer].state != "quarantined" or self._nodes[peer].quarantined_until <= now:
                del self._nodes[peer]
                self.awaiting.pop(peer, None)
        for peer in [p for p, by in self.awaiting.items() if by <= now]:
            del self.awaiting[peer]

    # -- persistence (see tooti.trust.standing_ledger) ------------------------------------------

    def export(self, peer_id: str) -> dict[str, Any] | None:
        """The record as wall-clock values for the store; ``None`` when unknown or only held."""
        s = self._nodes.get(peer_id)
        if s is None:
            return None
        offset = time.time() - self._clock()
        last = s.recent[-1] if s.recent else None
        return {
            "peer_id": peer_id,
            "state": s.state,
            "kind": s.kind,
            "reason": s.reason[:500],
            "since": s.since + offset,
            "quarantined_until": s.quarantined_until + offset if s.state == "quarantined" else None,
            "checks": s.checks,
            "failures": s.failures,
            "corroborated": s.corroborated,
            "corroborated_in_row": s.corroborated_in_row,
            "last_outcome": last.outcome if last else None,
        }

    def restore(self, record: dict[str, Any]) -> None:
        """Apply a stored record (this gateway's before a restart, or another gateway's).

        A quarantine still running is applied as it is; a trusted node stays trusted but is
        re-checked soon; probation progress is taken over. Records of references are ignored
        (this gateway's own configuration decides those).
        """
        peer = str(record["peer_id"])
        if peer in self.references:
            return
        now, offset = self._clock(), time.time() - self._clock()
        s = self._nodes.get(peer) or self._new(peer, now)
        state = record["state"]
        until = record.get("quarantined_until")
        if state == "quarantined":
            if until is None or until - offset <= now:
                return
            s.state, s.quarantined_until = "quarantined", until - offset
            s.next_check = s.quarantined_until
        elif state == "trusted":
            s.state = "trusted"
            s.next_check = min(s.next_check, now + self._spread(self.section.probation_interval_sec))
        elif state == "probation":
            s.state = "probation"
        else:
            return
        s.kind = str(record.get("kind") or s.kind)
        s.reason = str(record.get("reason") or s.reason)
        s.since = float(record.get("since") or now + offset) - offset
        s.checks = max(s.checks, int(record.get("checks") or 0))
        s.failures = max(s.failures, int(record.get("failures") or 0))
        s.corroborated = max(s.corroborated, int(record.get("corroborated") or 0))
        s.corroborated_in_row = int(record.get("corroborated_in_row") or 0)
        if s.state != "probation" or s.corroborated_in_row or s.checks:
            s.first_check_by = 0.0
            self.awaiting.pop(peer, None)
