"""The contract every routing strategy implements (hook API 3).

A strategy is a pure function over a snapshot: given the candidates for one request and the
request's preferences, it returns them in the order the gateway should try them. It does no I/O and
keeps no per-request state, so the gateway can call it on the request path without a network round
trip, and tests can call it with hand-made snapshots.

Since hook API 3 the gateway filters eligibility once, before the strategy runs
(:func:`tooti.routing.eligible`: the model, the request's ``only``/``ignore``/``max_price``/``region``),
and strategies only rank: every candidate they receive may be chosen. The gateway also bounds the
snapshot: all nodes of a model served by up to 64 nodes, else a shortlist of the best by load, TTFT
and price plus a random sample (``tooti.routing.table``), so a strategy's cost does not grow with
the network. After ranking, the gateway moves candidates with ``cooling`` set after the others
(they are still tried, last).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["Candidate", "Decision", "Preferences", "RoutingStrategy"]


class Candidate(msgspec.Struct, kw_only=True, frozen=True):
    """One node that could serve a request, as the gateway sees it right now."""

    peer_id: str
    models: frozenset[str]
    """Every name (aliases included) the node serves."""
    in_flight: int = 0
    queued: int = 0
    capacity: int | None = None
    ttft_ms: float | None = None
    """Moving average of time to first token, from heartbeats and the gateway's own measurements."""
    tokens_per_s: float | None = None
    """Moving average of decode speed."""
    price_in_per_1k: float | None = None
    price_out_per_1k: float | None = None
    region: str | None = None
    cooling: bool = False
    """The gateway saw this node fail recently and is resting it: it is tried after the others."""
    recent_failures: int = 0
    """Failures the gateway saw from this node in the last minute."""
    reputation: float = 1.0
    """The gateway's trust in this node, 0..1 (verification results and failures); 1.0 by default."""
    context_length: int | None = None
    """The tokens one request may use on this node for the requested model, as it announced them."""


class Preferences(msgspec.Struct, kw_only=True, frozen=True):
    """What one request asks of routing (``tooti`` body object or ``x-tooti-*`` headers)."""

    model: str
    strategy: str | None = None
    max_price: float | None = None
    """Ceiling on (input + output) price per 1K tokens; nodes without a price count as free."""
    only: frozenset[str] | None = None
    ignore: frozenset[str] = frozenset()
    region: str | None = None
    context_tokens: int = 0
    """The gateway's low estimate of the tokens the request needs (prompt plus ``max_tokens``;
    :mod:`tooti.routing.context_fit`); nodes announcing a smaller context are not eligible. 0: unknown."""
    prefix_keys: tuple[int, ...] = ()
    """Hashes of the request's rendered prefix, shortest first (:mod:`tooti.routing.affinity`)."""


class Decision(msgspec.Struct, kw_only=True, frozen=True):
    """The ordered candidates to try, and why."""

    ordered: tuple[Candidate, ...]
    strategy: str
    reasons: tuple[str, ...] = ()
    """Human-readable explanation, e.g. ``"12D3..: score 0.31 (load 0.2, ttft 40 ms)"``."""

    @property
    def peer_ids(self) -> list[str]:
        """The peer ids in the order to try."""
        return [c.peer_id for c in self.ordered]


@runtime_checkable
class RoutingStrategy(Protocol):
    """Orders the candidates for one request. Pure: no I/O, no mutation of the inputs.

    Required members:
        name: the entry-point name users write as ``routing.strategy`` (e.g. ``"latency"``).
        from_params: builds an instance from the ``routing.params.<name>`` config mapping; raises
            ``ValueError`` naming the bad parameter.
        rank: returns a :class:`Decision` whose ``ordered`` is a permutation of ``candidates``,
            all of which the gateway already found eligible; it never drops, adds or invents one.
    """

    name: ClassVar[str]

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RoutingStrategy:
        """Build the strategy from its config parameters."""
        ...

    def rank(self, candidates: Sequence[Candidate], prefs: Preferences) -> Decision:
        """Return ``candidates`` (all eligible) in the order to try them."""
        ...
