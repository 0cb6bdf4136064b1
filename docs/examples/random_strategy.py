"""A complete routing strategy plugin module: pick uniformly at random among the candidates.

Register it from a distribution's pyproject.toml:

    [project.entry-points."tooti.routers"]
    random = "my_router.random_strategy"
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, ClassVar

from tooti import Candidate, Decision, Preferences, RoutingStrategy, hookimpl

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class RandomStrategy:
    """Shuffle the candidates. ``seed`` makes the order reproducible."""

    name: ClassVar[str] = "random"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RandomStrategy:
        """Accept only ``seed`` (an int)."""
        unknown = set(params) - {"seed"}
        if unknown:
            raise ValueError(f"strategy 'random' has no parameter {sorted(unknown)[0]!r}")
        seed = params.get("seed")
        if seed is not None and not isinstance(seed, int):
            raise ValueError(f"routing.params.random.seed must be an int, got {seed!r}")
        return cls(random.Random(seed))

    def rank(self, candidates: Sequence[Candidate], prefs: Preferences) -> Decision:
        """The candidates (all eligible: the gateway filtered them) in random order."""
        ordered = list(candidates)
        self._rng.shuffle(ordered)
        return Decision(ordered=tuple(ordered), strategy=self.name, reasons=("uniform random",))


@hookimpl
def tooti_register_routers() -> list[type[RoutingStrategy]]:
    """Register the random strategy."""
    return [RandomStrategy]
