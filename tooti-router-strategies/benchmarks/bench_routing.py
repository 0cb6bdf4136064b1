"""Routing decisions (pytest-benchmark; not part of the default test run).

``test_rank`` ranks 10, 64 (the most the gateway hands a strategy), 1,000 and 10,000 candidates: every
node serves the model, 2 % are cooling, 10 % have no TTFT yet, 10 % have queued requests and 5 %
recent failures. ``test_gateway_decide`` is the whole decision as the gateway makes it, over a route
table of 10, 1,000 and 10,000 nodes: shortlist, prepared candidates, eligibility, the strategy, cooling
last, plus the observations a real request records. ``floor`` rows measure the cheapest possible O(n)
pass (reading one attribute of every candidate) for comparison.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from tooti.network import AdvertisedModel, NodeView
from tooti.routing import Candidate, Preferences, eligible
from tooti.routing.default import SimpleStrategy
from tooti.routing.table import RouteTable
from tooti_router_strategies.balanced import BalancedStrategy
from tooti_router_strategies.cost import CostStrategy
from tooti_router_strategies.latency import LatencyStrategy
from tooti_router_strategies.least_loaded import LeastLoadedStrategy

if TYPE_CHECKING:
    from collections.abc import Callable

    from pytest_benchmark.fixture import BenchmarkFixture

    from tooti.routing import RoutingStrategy

SIZES = [10, 64, 1_000, 10_000]
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
            cooling=rng.random() < 0.02,
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
    """One ``rank`` call: scoring, ordering and reasons (eligibility is the gateway's, measured below)."""
    strategy = STRATEGIES[name]()
    decision = benchmark(strategy.rank, candidates, PREFS)
    if len(decision.ordered) != len(candidates):
        raise AssertionError(f"{name} did not return every candidate")


def test_floor_one_attribute(benchmark: BenchmarkFixture, candidates: list[Candidate]) -> None:
    """Lower bound for any O(n) strategy in CPython: one attribute read per candidate."""
    benchmark(lambda: [c.in_flight for c in candidates])


def test_core_eligible(benchmark: BenchmarkFixture, candidates: list[Candidate]) -> None:
    """The core's reference eligibility filter alone."""
    benchmark(eligible, candidates, PREFS)


@pytest.fixture(scope="module", params=[10, 1_000, 10_000], ids=lambda n: f"nodes={n}")
def route_table(request: pytest.FixtureRequest) -> RouteTable:
    """A route table of ``n`` live nodes serving ``m``, as heartbeats would have filled it."""
    rng = random.Random(7)
    table = RouteTable(float("inf"))
    for i in range(request.param):
        table.put(
            NodeView(
                peer_id=f"12D3KooW{i:08d}",
                models=(AdvertisedModel(name="m", aliases=("m:latest",), price_in_per_1k=rng.uniform(0, 0.01)),),
                in_flight=rng.randint(0, 6),
                queued=rng.randint(1, 4) if rng.random() < 0.1 else 0,
                capacity=rng.choice([1, 4, 8, 16]),
                ttft_ms=None if rng.random() < 0.1 else rng.uniform(40, 2000),
                tokens_per_s=rng.uniform(5, 120),
            )
        )
    return table


@pytest.mark.parametrize("name", ["simple", "least-loaded", "latency", "cost", "balanced"])
def test_gateway_decide(benchmark: BenchmarkFixture, route_table: RouteTable, name: str) -> None:
    """The gateway's whole decision over a route table, with the observations one request records."""
    from tooti.config.model import Config
    from tooti.gateway.metrics import GatewayMetrics
    from tooti.gateway.service import Gateway
    from tooti.plugins import PluginHost

    class _Network:
        peer_id = "gateway"

        def nodes(self) -> list[NodeView]:
            return route_table.views()

        def route_table(self) -> RouteTable:
            return route_table

    gateway = Gateway(Config(), _Network(), PluginHost(), GatewayMetrics())  # type: ignore[arg-type]
    obs = gateway.observations
    prefs = Preferences(model="m", strategy=name)

    def one_request() -> None:
        peer = gateway.decide(prefs).ordered[0].peer_id
        obs.started(peer)
        obs.first_token(peer, 30.0)
        obs.finished(peer)

    benchmark(one_request)
