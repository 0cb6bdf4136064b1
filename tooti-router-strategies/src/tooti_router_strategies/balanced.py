"""balanced: one weighted score over load, latency, price and recent failures (the default).

Each component is scaled to 0..1 by dividing by its largest value among the eligible nodes, so the
weights mean the same thing whatever the units (a node with twice the best TTFT and the same
price loses exactly ``latency_weight x`` the difference)::

    score = load_weight    x load / max load
          + latency_weight x expected_ttft / max expected_ttft
          + cost_weight    x price / max price
          + failure_weight x recent_failures / max recent_failures

Lower is better. Nodes within ``tolerance`` of the best score go first in random order, so equally
good nodes share the load; the rest follow best first.
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
    load_ratios,
    make_rng,
    order_indices,
    prices,
    split_sample,
    spread_band,
)
from tooti_router_strategies._params import Param, parse_params

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping, Sequence

    from tooti.routing.protocol import Candidate, Decision, Preferences

__all__ = ["BalancedStrategy"]

_WEIGHTS = ("load_weight", "latency_weight", "cost_weight", "failure_weight")


def _inv(values: Sequence[float]) -> float:
    """1 / max(values), or 0 when every value is 0 (the component then cannot separate nodes)."""
    top = max(values, default=0.0)
    return 1.0 / top if top > 0 else 0.0


class BalancedStrategy:
    """Order by a weighted, normalised score with a random near-best band.

    Args:
        load_weight: weight of ``(in_flight + queued) / capacity``.
        latency_weight: weight of the expected TTFT.
        cost_weight: weight of the price per 1K tokens.
        failure_weight: weight of the gateway-observed recent failures.
        tolerance: score distance from the best within which nodes are shuffled.
        unknown_ttft: TTFT assumed for unmeasured nodes (``median`` or ``optimistic``).
        queue_penalty: weight of queued requests in the expected TTFT.
        explain: how many ranked nodes get a reason line.
        sample: when more candidates are given, rank only a random sample of this many (0 = all).
        seed: seed for the band's random order; ignored when ``rng`` is given.
        rng: random generator to use (tests inject one); default: seeded from the OS.
    """

    name: ClassVar[str] = "balanced"
    PARAMS: ClassVar[dict[str, Param]] = {
        "load_weight": Param(kind=float, ge=0.0, le=1000.0),
        "latency_weight": Param(kind=float, ge=0.0, le=1000.0),
        "cost_weight": Param(kind=float, ge=0.0, le=1000.0),
        "failure_weight": Param(kind=float, ge=0.0, le=1000.0),
        "tolerance": Param(kind=float, ge=0.0, doc="near-best score band width"),
        **TTFT_PARAMS,
        **COMMON_PARAMS,
    }

    def __init__(
        self,
        *,
        load_weight: float = 0.35,
        latency_weight: float = 0.35,
        cost_weight: float = 0.2,
        failure_weight: float = 0.1,
        tolerance: float = 0.05,
        unknown_ttft: UnknownTtft = "median",
        queue_penalty: float = 1.0,
        explain: int = 3,
        sample: int = 0,
        seed: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.sample = sample
        self.weights = (load_weight, latency_weight, cost_weight, failure_weight)
        if not any(self.weights):
            raise ValueError(f"routing.params.balanced: at least one of {', '.join(_WEIGHTS)} must be > 0")
        self._weights_text = ", ".join(
            f"{n.removesuffix('_weight')} {w:g}" for n, w in zip(_WEIGHTS, self.weights, strict=True)
        )
        self.tolerance = tolerance
        self.unknown_ttft: UnknownTtft = unknown_ttft
        self.queue_penalty = queue_penalty
        self.explain = explain
        self.rng = make_rng(seed, rng)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> BalancedStrategy:
        """Build from ``routing.params.balanced``; raises ``ValueError`` naming a bad key."""
        return cls(**parse_params(cls.name, params, cls.PARAMS))

    def rank(self, candidates: Sequence[Candidate], prefs: Preferences) -> Decision:
        """Return the (already filtered) candidates: near-best band in random order, then lowest score first."""
        el, rest = split_sample(list(candidates), self.sample, self.rng)
        loads = load_ratios(el)
        ttfts, _ = expected_ttfts(el, self.unknown_ttft, self.queue_penalty)
        price = prices(el)
        fails = [c.recent_failures for c in el]
        wl, wt, wc, wf = self.weights
        a, b, c, d = wl * _inv(loads), wt * _inv(ttfts), wc * _inv(price), wf * _inv(fails)
        scores = [a * x + b * y + c * z for x, y, z in zip(loads, ttfts, price, strict=True)]
        if d:  # failures are rare: add their term only where there are some
            for i in compress(range(len(fails)), fails):
                scores[i] += d * fails[i]
        order = order_indices(scores)
        order, band = spread_band(order, scores, self.tolerance, self.rng)

        def describe(i: int) -> str:
            return (
                f"score {scores[i]:.3f} = load {a * loads[i]:.3f} ({loads[i]:.2f})"
                f" + ttft {b * ttfts[i]:.3f} ({ttfts[i]:.0f} ms) + price {c * price[i]:.3f} ({price[i]:.4g}/1K)"
                f" + failures {d * fails[i]:.3f} ({fails[i]})"
            )

        return build_decision(
            self.name,
            el,
            order,
            summary=f"weights {self._weights_text}, {band} within {self.tolerance:g} of the best score, random order",
            explain=self.explain,
            describe=describe,
            rest=rest,
        )
