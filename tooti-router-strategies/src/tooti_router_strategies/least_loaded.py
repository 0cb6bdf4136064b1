"""least-loaded: the node with the most free capacity first.

Load is ``(in_flight + queued) / capacity`` (an unknown capacity counts as 1 slot), so a 16-slot node
running 4 requests (0.25) beats a 1-slot node running 1 (1.0). Ties go to the node with fewer
gateway-observed recent failures, then to the lower expected TTFT. Deterministic: the gateway's own
in-flight accounting moves the next request elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tooti_router_strategies._common import (
    COMMON_PARAMS,
    TTFT_PARAMS,
    UnknownTtft,
    build_decision,
    load_ratios,
    make_rng,
    order_indices,
    split_sample,
    ttft_lookup,
)
from tooti_router_strategies._params import Param, parse_params

if TYPE_CHECKING:
    import random
    from collections.abc import Mapping, Sequence

    from tooti.routing.protocol import Candidate, Decision, Preferences

__all__ = ["LeastLoadedStrategy"]


class LeastLoadedStrategy:
    """Order by load ratio, then recent failures, then expected TTFT.

    Args:
        explain: how many ranked nodes get a reason line.
        unknown_ttft: TTFT assumed for unmeasured nodes in the tie-break (``median``/``optimistic``).
        queue_penalty: weight of queued requests in the expected TTFT tie-break.
        sample: when more candidates are given, rank only a random sample of this many (0 = all).
        seed: seed for the sample; ignored when ``rng`` is given.
        rng: random generator for the sample (tests inject one).
    """

    name: ClassVar[str] = "least-loaded"
    PARAMS: ClassVar[dict[str, Param]] = {**COMMON_PARAMS, **TTFT_PARAMS}

    def __init__(
        self,
        *,
        explain: int = 3,
        unknown_ttft: UnknownTtft = "median",
        queue_penalty: float = 1.0,
        sample: int = 0,
        seed: int | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.explain = explain
        self.sample = sample
        self.rng = make_rng(seed, rng)
        self.unknown_ttft: UnknownTtft = unknown_ttft
        self.queue_penalty = queue_penalty

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> LeastLoadedStrategy:
        """Build from ``routing.params.least-loaded``; raises ``ValueError`` naming a bad key."""
        return cls(**parse_params(cls.name, params, cls.PARAMS))

    def rank(self, candidates: Sequence[Candidate], prefs: Preferences) -> Decision:
        """Return the candidates (the gateway already filtered them), least loaded first."""
        el, rest = split_sample(list(candidates), self.sample, self.rng)
        loads = load_ratios(el)
        ttft_at = ttft_lookup(el, self.unknown_ttft, self.queue_penalty)
        order = order_indices(loads, lambda idx: [el[i].recent_failures for i in idx], ttft_at)

        shown = order[: self.explain]
        ttft_of = dict(zip(shown, ttft_at(shown), strict=True))  # one batch for the reason lines

        def describe(i: int) -> str:
            c = el[i]
            return (
                f"load {loads[i]:.2f} ({c.in_flight} in flight + {c.queued} queued, capacity {c.capacity or 1}),"
                f" {c.recent_failures} recent failures, expected ttft {ttft_of[i]:.0f} ms"
            )

        return build_decision(
            self.name,
            el,
            order,
            summary="lowest (in flight + queued) / capacity first",
            explain=self.explain,
            describe=describe,
            rest=rest,
        )
