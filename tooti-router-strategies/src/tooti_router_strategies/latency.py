"""latency: lowest expected time to first token, random among the near-best.

Expected TTFT is the node's moving average scaled by its queue (see
:func:`~tooti_router_strategies._common.expected_ttfts`). Every node within
``max(tolerance_ms, tolerance_ratio x best)`` of the best is *near-best*; those go first in random
order (LiteLLM's buffer band), so a handful of equally fast nodes share the traffic instead of the
single fastest one taking all of it until its average degrades. The rest follow fastest first.

Each gateway-observed recent failure adds ``failure_penalty_ms`` to a node's expected TTFT: a failed
attempt costs the client a round trip before failover, and a node's TTFT average does not see it.
"""

from __future__ import annotations

from itertools import compress
from typing import TYPE_CHECKING, Any, ClassVar

from tooti_router_strategies._common import (
    COMMON_PARAMS,
    TTFT_PARAMS,
    UnknownTtft,
    build_decision,
    expected_ttfts,
    make_rng,
    order_indices,
    split_sample,
    spread_band,
)
from tooti_router_strategies._params import Param, parse_params

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping, Sequence

    from tooti.routing.protocol import Candidate, Decision, Preferences

__all__ = ["LatencyStrategy"]


class LatencyStrategy:
    """Order by expected TTFT with a random near-best band.

    Args:
        tolerance_ms: absolute width of the near-best band.
        tolerance_ratio: relative width of the band (fraction of the best expected TTFT); the wider
            of the two applies.
        unknown_ttft: TTFT assumed for unmeasured nodes (``median`` or ``optimistic``).
        queue_penalty: weight of queued requests in the expected TTFT.
        explain: how many ranked nodes get a reason line.
        sample: when more candidates are given, rank only a random sample of this many (0 = all).
        seed: seed for the band's random order; ignored when ``rng`` is given.
        rng: random generator to use (tests inject one); default: seeded from the OS.
    """

    name: ClassVar[str] = "latency"
    PARAMS: ClassVar[dict[str, Param]] = {
        "tolerance_ms": Param(kind=float, ge=0.0, doc="absolute near-best band width"),
        "tolerance_ratio": Param(kind=float, ge=0.0, le=10.0, doc="relative near-best band width"),
        "failure_penalty_ms": Param(kind=float, ge=0.0, doc="added per recent failure"),
        **TTFT_PARAMS,
        **COMMON_PARAMS,
    }

    def __init__(
        self,
        *,
        tolerance_ms: float = 20.0,
        tolerance_ratio: float = 0.1,
        failure_penalty_ms: float = 200.0,
        unknown_ttft: UnknownTtft = "median",
        queue_penalty: float = 1.0,
        explain: int = 3,
        sample: int = 0,
        seed: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sample = sample
        self.tolerance_ms = tolerance_ms
        self.tolerance_ratio = tolerance_ratio
        self.failure_penalty_ms = failure_penalty_ms
        self.unknown_ttft: UnknownTtft = unknown_ttft
        self.queue_penalty = queue_penalty
        self.explain = explain
        self.rng = make_rng(seed, rng)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LatencyStrategy:
        """Build from ``routing.params.latency``; raises ``ValueError`` naming a bad key."""
        return cls(**parse_params(cls.name, params, cls.PARAMS))

    def rank(self, candidates: Sequence[Candidate], prefs: Preferences) -> Decision:
        """Return the (already filtered) candidates: near-best band in random order, then fastest first."""
        el, rest = split_sample(list(candidates), self.sample, self.rng)
        ttfts, fill = expected_ttfts(el, self.unknown_ttft, self.queue_penalty)
        if self.failure_penalty_ms:
            fails = [c.recent_failures for c in el]
            if any(fails):  # healthy networks skip the Python-level loop
                for i in compress(range(len(el)), fails):
                    ttfts[i] += self.failure_penalty_ms * fails[i]
        order = order_indices(ttfts)
        best = ttfts[order[0]] if order else 0.0
        width = max(self.tolerance_ms, self.tolerance_ratio * best)
        order, band = spread_band(order, ttfts, width, self.rng)

        def describe(i: int) -> str:
            c = el[i]
            note = f" (not measured: assumed {self.unknown_ttft} {fill:.0f} ms)" if c.ttft_ms is None else ""
            if c.recent_failures and self.failure_penalty_ms:
                note += f" (incl. {c.recent_failures} recent failures x {self.failure_penalty_ms:g} ms)"
            where = "near-best band, random order" if band > 1 and ttfts[i] <= best + width else "fastest first"
            return f"expected ttft {ttfts[i]:.0f} ms{note}, {where}"

        return build_decision(
            self.name,
            el,
            order,
            summary=f"band <= {best + width:.0f} ms holds {band}",
            explain=self.explain,
            describe=describe,
            rest=rest,
        )
