"""One routing decision over 10, 1,000 and 10,000 candidates (pytest-benchmark; not part of the default test run).

The snapshot is what the gateway hands a strategy for one model: every node serves it, about 2 % are
stale, 2 % in cooldown, 10 % have no TTFT yet, 10 % have queued requests and 5 % recent failures.
``floor`` rows measure the cheapest possible O(n) pass (reading one attribute of every candidate)
for comparison.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from tooti.routing import Candidate, Preferences, eligible
from tooti.routing.default import SimpleStrategy
from tooti_router_strategies.balanced import BalancedStrategy
from tooti_router_strategies.cost import CostStrategy
from tooti_router_strategies.latency import LatencyStrategy
from tooti_router_strategies.least_loaded import LeastLoadedStrategy

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_benchmark.fixture import BenchmarkFixture

    from tooti.routing import RoutingStrategy

SIZES = [10, 1_000, 10_000]
PREFS = Preferences(model="m")
STRATEGIES: dict[str, Callable[[], RoutingStrategy]] = {
    "least-loaded": LeastLoadedStrategy,
    "latency": lambda: LatencyStrategy(seed=1),
    "cost": CostStrategy,
    "balanced": lambda: BalancedStrategy(seed=1),
    "simple (built-in)": SimpleStrategy,
    "least-loaded sample=256": lambda: LeastLoadedStrategy(sample=256, seed=1),
    "latency sample=256": lambda: LatencyStrategy(sample=256, seed=1),
    "balanced sample=256": lambda: BalancedStrategy(sample=256, seed=1),
}


def snapshot(n: int, seed: int = 42) -> list[Candidate]:
    """A realistic per-model snapshot of ``n`` nodes."""
    rng = random.Random(seed)
    return [
        Candidate(
            peer_id=f"12D3KooW{i:08d}",
            models=frozenset({"m", "m:latest"}),
            in_flight=rng.randint(0, 6),
            queued=rng.randint(1, 4) if rng.random() < 0.1 else 0,
            capacity=rng.choice([1, 4, 8, 16]),
            ttft_ms=None if rng.random() < 0.1 else rng.uniform(40, 2000),
            tokens_per_s=rng.uniform(5, 120),
            price_in_per_1k=rng.choice([None, rng.uniform(0, 0.01)]),
            price_out_per_1k=rng.uniform(0, 0.01),
            region=rng.choice(["eu", "us", None]),
            age_s=rng.uniform(0, 10),
            stale=rng.random() < 0.02,
            in_cooldown=rng.random() < 0.02,
            recent_failures=rng.randint(1, 3) if rng.random() < 0.05 else 0,
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"n={n}")
def candidates(request: pytest.FixtureRequest) -> list[Candidate]:
    """The snapshot for one size, built once per module."""
    return snapshot(request.param)


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_rank(benchmark: BenchmarkFixture, candidates: list[Candidate], name: str) -> None:
    """One ``rank`` call: eligibility, scoring, ordering and reasons."""
    strategy = STRATEGIES[name]()
    decision = benchmark(strategy.rank, candidates, PREFS)
    if len(decision.ordered) != len(eligible(candidates, PREFS)):
        raise AssertionError(f"{name} did not return every eligible candidate")


def test_floor_one_attribute(benchmark: BenchmarkFixture, candidates: list[Candidate]) -> None:
    """Lower bound for any O(n) strategy in CPython: one attribute read per candidate."""
    benchmark(lambda: [c.in_flight for c in candidates])


def test_core_eligible(benchmark: BenchmarkFixture, candidates: list[Candidate]) -> None:
    """The core's reference eligibility filter alone."""
    benchmark(eligible, candidates, PREFS)
