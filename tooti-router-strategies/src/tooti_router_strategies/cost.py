"""cost: cheapest (input + output) price per 1K tokens first, then lowest expected TTFT.

With ``respect_capacity`` (the default) nodes that have a free slot (``in_flight + queued <
capacity``) come before full ones, so traffic spills to the next cheapest node instead of queueing
behind the cheapest; set it to false for strict cheapest-first (OpenRouter's ``sort: price``).

The request's ``max_price`` ceiling is applied by eligibility before ranking, so a node above it is
never returned. Nodes that set no price count as free, as in the ceiling check.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tooti.routing.load import load_ratio
from tooti_router_strategies._common import (
    COMMON_PARAMS,
    TTFT_PARAMS,
    UnknownTtft,
    build_decision,
    load_ratios,
    make_rng,
    order_indices,
    prices,
    split_sample,
    ttft_lookup,
)
from tooti_router_strategies._params import Param, parse_params

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping, Sequence

    from tooti.routing.protocol import Candidate, Decision, Preferences

__all__ = ["CostStrategy"]


def _full_after_free(el: Sequence[Candidate], price: list[float]) -> list[float]:
    """Price keys where every full node sorts after every free one, as one float per node.

    Adding ``max - min + 1`` to full nodes' prices separates the groups and keeps the price order
    inside each (rounding is monotonic); one float key sorts far faster than a tuple.
    """
    if not price:
        return price
    offset = max(price) - min(price) + 1.0
    return [p + offset if load >= 1.0 else p for p, load in zip(price, load_ratios(el), strict=True)]


def _full(c: Candidate) -> bool:
    """No free slot: a load (:func:`tooti.routing.load.load_ratio`) of 1 or more."""
    return load_ratio(c) >= 1.0


class CostStrategy:
    """Order by price per 1K tokens, ties by expected TTFT. Deterministic.

    Args:
        respect_capacity: order nodes with a free slot before full ones.
        unknown_ttft: TTFT assumed for unmeasured nodes in the tie-break (``median``/``optimistic``).
        queue_penalty: weight of queued requests in the expected TTFT tie-break.
        explain: how many ranked nodes get a reason line.
        sample: when more candidates are given, rank only a random sample of this many (0 = all);
            the cheapest of a sample is not the cheapest overall, so leave it off for strict cost.
        seed: seed for the sample; ignored when ``rng`` is given.
        rng: random generator for the sample (tests inject one).
    """

    name: ClassVar[str] = "cost"
    PARAMS: ClassVar[dict[str, Param]] = {
        "respect_capacity": Param(kind=bool, doc="free nodes before full ones"),
        **TTFT_PARAMS,
        **COMMON_PARAMS,
    }

    def __init__(
        self,
        *,
        respect_capacity: bool = True,
        unknown_ttft: UnknownTtft = "median",
        queue_penalty: float = 1.0,
        explain: int = 3,
        sample: int = 0,
        seed: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.respect_capacity = respect_capacity
        self.sample = sample
        self.rng = make_rng(seed, rng)
        self.unknown_ttft: UnknownTtft = unknown_ttft
        self.queue_penalty = queue_penalty
        self.explain = explain

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> CostStrategy:
        """Build from ``routing.params.cost``; raises ``ValueError`` naming a bad key."""
        return cls(**parse_params(cls.name, params, cls.PARAMS))

    def rank(self, candidates: Sequence[Candidate], prefs: Preferences) -> Decision:
        """Return the candidates (the gateway already filtered them), cheapest first."""
        el, rest = split_sample(list(candidates), self.sample, self.rng)
        price = prices(el)
        ttft_at = ttft_lookup(el, self.unknown_ttft, self.queue_penalty)
        primary = _full_after_free(el, price) if self.respect_capacity else price
        order = order_indices(primary, ttft_at)
        ceiling = "none" if prefs.max_price is None else f"{prefs.max_price:g}"

        shown = order[: self.explain]
        ttft_of = dict(zip(shown, ttft_at(shown), strict=True))  # one batch for the reason lines

        def describe(i: int) -> str:
            slots = "full (after free nodes), " if self.respect_capacity and _full(el[i]) else ""
            return f"{slots}price {price[i]:.4g}/1K tokens, expected ttft {ttft_of[i]:.0f} ms"

        return build_decision(
            self.name,
            el,
            order,
            summary=f"cheapest first{' with a free slot' if self.respect_capacity else ''} (max_price {ceiling}),"
            " ties by expected ttft",
            explain=self.explain,
            describe=describe,
            rest=rest,
        )
