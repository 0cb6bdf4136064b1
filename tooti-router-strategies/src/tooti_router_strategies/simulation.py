"""A seeded simulated network for comparing strategies (tests and ``docs/routing.md`` use it).

Nodes differ in speed, capacity, price and reliability; one is stale, one serves another model, one
fails every request (so the gateway puts it in cooldown). Requests arrive as a Poisson stream; the
simulated gateway keeps per-node in-flight counts, a TTFT moving average, recent failures and
cooldowns, builds a :class:`~tooti.routing.Candidate` snapshot of the live nodes for every request,
filters it with :func:`tooti.routing.eligible` as the real gateway does, asks the strategy for an
order, moves cooling nodes last (:func:`tooti.routing.cooling_last`) and tries up to three nodes.
TTFT grows with a node's load (processor sharing), so piling onto one node hurts.

Run ``python -m tooti_router_strategies.simulation`` to print the comparison table.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from tooti.routing.eligibility import eligible
from tooti.routing.ordering import cooling_last
from tooti.routing.protocol import Candidate, Decision, Preferences

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from tooti.routing.protocol import RoutingStrategy

__all__ = [
    "RandomStrategy",
    "SimNode",
    "SimResult",
    "default_factories",
    "default_network",
    "format_table",
    "run_all",
    "simulate",
]

MODEL = "m"
_FAIL_PENALTY_MS = 250.0
"""Time a failed attempt costs the client before the gateway tries the next node."""
_COOLDOWN_MS = 30_000.0
_COOLDOWN_AFTER = 3
_FAILURE_WINDOW_MS = 60_000.0
_EWMA = 0.2
_MAX_ATTEMPTS = 3


@dataclass
class SimNode:
    """One simulated node and the gateway's view of it."""

    peer_id: str
    base_ttft_ms: float
    tokens_per_s: float
    capacity: int
    price: float
    fail_prob: float = 0.0
    models: frozenset[str] = frozenset({MODEL})
    stale: bool = False
    advertised_ttft: bool = True
    in_flight: int = 0
    ewma_ttft: float | None = None
    failures: list[float] = field(default_factory=list)
    cooldown_until: float = -1.0

    def snapshot(self, now: float) -> Candidate:
        """The candidate record the gateway would build at ``now``."""
        self.failures = [t for t in self.failures if now - t < _FAILURE_WINDOW_MS]
        return Candidate(
            peer_id=self.peer_id,
            models=self.models,
            in_flight=min(self.in_flight, self.capacity),
            queued=max(0, self.in_flight - self.capacity),
            capacity=self.capacity,
            ttft_ms=self.ewma_ttft,
            tokens_per_s=self.tokens_per_s,
            price_in_per_1k=self.price / 2,
            price_out_per_1k=self.price / 2,
            cooling=now < self.cooldown_until,
            recent_failures=len(self.failures),
        )


def default_network() -> list[SimNode]:
    """Twelve nodes: fast and dear, middling, slow and cheap, flaky, plus three traps."""
    return [
        SimNode(peer_id="fast-a", base_ttft_ms=80, tokens_per_s=60, capacity=4, price=0.004),
        SimNode(peer_id="fast-b", base_ttft_ms=90, tokens_per_s=55, capacity=4, price=0.0045),
        SimNode(peer_id="mid-a", base_ttft_ms=200, tokens_per_s=30, capacity=8, price=0.0015),
        SimNode(peer_id="mid-b", base_ttft_ms=220, tokens_per_s=30, capacity=8, price=0.0015, advertised_ttft=False),
        SimNode(peer_id="mid-c", base_ttft_ms=250, tokens_per_s=25, capacity=6, price=0.0012),
        SimNode(peer_id="slow-a", base_ttft_ms=600, tokens_per_s=15, capacity=8, price=0.0003),
        SimNode(peer_id="slow-b", base_ttft_ms=700, tokens_per_s=12, capacity=8, price=0.0002),
        SimNode(peer_id="tiny", base_ttft_ms=120, tokens_per_s=40, capacity=1, price=0.001),
        SimNode(peer_id="flaky", base_ttft_ms=100, tokens_per_s=50, capacity=4, price=0.0008, fail_prob=0.25),
        SimNode(peer_id="broken", base_ttft_ms=50, tokens_per_s=80, capacity=8, price=0.0001, fail_prob=1.0),
        SimNode(peer_id="stale", base_ttft_ms=40, tokens_per_s=90, capacity=8, price=0.00005, stale=True),
        SimNode(
            peer_id="other-model", base_ttft_ms=40, tokens_per_s=90, capacity=8, price=0.0, models=frozenset({"x"})
        ),
    ]


class RandomStrategy:
    """Baseline: eligible nodes in uniformly random order."""

    name: ClassVar[str] = "random"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RandomStrategy:
        """Build with ``seed`` as the only parameter."""
        return cls(random.Random(params.get("seed")))

    def rank(self, candidates: Sequence[Candidate], prefs: Preferences) -> Decision:
        """Shuffle the candidates."""
        el = list(candidates)
        self.rng.shuffle(el)
        return Decision(ordered=tuple(el), strategy=self.name)


@dataclass(frozen=True)
class SimResult:
    """What one strategy achieved on the simulated network."""

    strategy: str
    requests: int
    mean_ttft_ms: float
    p95_ttft_ms: float
    mean_cost: float
    failed_attempts: int
    failed_requests: int
    forbidden_picks: int
    """Picks of a node that was stale or without the model, or of a cooling node while a warm one was
    left untried: must be 0."""
    share: dict[str, float]


@dataclass
class _Run:
    nodes: dict[str, SimNode]
    rng: random.Random
    ends: list[tuple[float, str]] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    costs: list[float] = field(default_factory=list)
    picks: dict[str, int] = field(default_factory=dict)
    failed_attempts: int = 0
    failed_requests: int = 0
    forbidden: int = 0

    def settle(self, now: float) -> None:
        while self.ends and self.ends[0][0] <= now:
            _, peer = heapq.heappop(self.ends)
            self.nodes[peer].in_flight -= 1

    def attempt(self, cand: Candidate, now: float) -> float | None:
        """Try one node; return its TTFT or ``None`` when it failed."""
        node = self.nodes[cand.peer_id]
        if node.stale or MODEL not in cand.models:
            self.forbidden += 1
        if self.rng.random() < node.fail_prob:
            self.failed_attempts += 1
            node.failures.append(now)
            if len(node.failures) >= _COOLDOWN_AFTER:
                node.cooldown_until = now + _COOLDOWN_MS
            return None
        ttft = node.base_ttft_ms * (1.0 + node.in_flight / node.capacity) * self.rng.lognormvariate(0.0, 0.2)
        node.ewma_ttft = ttft if node.ewma_ttft is None else (1 - _EWMA) * node.ewma_ttft + _EWMA * ttft
        node.in_flight += 1
        duration = ttft + 1000.0 * self.rng.randint(50, 300) / node.tokens_per_s
        heapq.heappush(self.ends, (now + duration, node.peer_id))
        self.picks[node.peer_id] = self.picks.get(node.peer_id, 0) + 1
        self.costs.append(node.price)
        return ttft

    def serve(self, decision: Decision, now: float) -> None:
        waited = 0.0
        flags = [c.cooling for c in decision.ordered]
        if flags != sorted(flags):  # a cooling node ahead of a warm one
            self.forbidden += 1
        for cand in decision.ordered[:_MAX_ATTEMPTS]:
            ttft = self.attempt(cand, now + waited)
            if ttft is not None:
                self.ttfts.append(waited + ttft)
                return
            waited += _FAIL_PENALTY_MS
        self.failed_requests += 1


def simulate(strategy: RoutingStrategy, *, requests: int = 3000, rate_per_s: float = 5.0, seed: int = 1) -> SimResult:
    """Send ``requests`` Poisson arrivals through ``strategy`` on a fresh :func:`default_network`."""
    nodes = default_network()
    rng = random.Random(seed)
    run = _Run(nodes={n.peer_id: n for n in nodes}, rng=rng)
    for n in nodes:  # heartbeats advertise a TTFT for most nodes; the gateway's EWMA refines it
        n.ewma_ttft = n.base_ttft_ms if n.advertised_ttft else None
    prefs = Preferences(model=MODEL)
    now = 0.0
    for _ in range(requests):
        now += rng.expovariate(rate_per_s) * 1000.0
        run.settle(now)
        live = [n.snapshot(now) for n in nodes if not n.stale]  # the route table never selects stale nodes
        candidates = eligible(live, prefs)
        if candidates:
            run.serve(cooling_last(strategy.rank(candidates, prefs)), now)
        else:
            run.failed_requests += 1
    ttfts = sorted(run.ttfts)
    served = max(len(ttfts), 1)
    return SimResult(
        strategy=strategy.name,
        requests=requests,
        mean_ttft_ms=sum(ttfts) / served,
        p95_ttft_ms=ttfts[int(0.95 * (len(ttfts) - 1))] if ttfts else 0.0,
        mean_cost=sum(run.costs) / served,
        failed_attempts=run.failed_attempts,
        failed_requests=run.failed_requests,
        forbidden_picks=run.forbidden,
        share={peer: count / served for peer, count in sorted(run.picks.items())},
    )


def run_all(
    factories: Mapping[str, Callable[[int], RoutingStrategy]], *, seed: int = 1, requests: int = 3000
) -> list[SimResult]:
    """Simulate each strategy (built by ``factories[name](seed)``) on the same seeded traffic."""
    return [
        dataclasses.replace(simulate(make(seed), requests=requests, seed=seed), strategy=label)
        for label, make in factories.items()
    ]


def default_factories() -> dict[str, Callable[[int], RoutingStrategy]]:
    """Random baseline, the built-in ``simple``, and this package's strategies, each seeded."""
    from tooti.routing.default import SimpleStrategy
    from tooti_router_strategies.balanced import BalancedStrategy
    from tooti_router_strategies.cost import CostStrategy
    from tooti_router_strategies.latency import LatencyStrategy
    from tooti_router_strategies.least_loaded import LeastLoadedStrategy

    return {
        "random": lambda s: RandomStrategy(random.Random(s)),
        "simple": lambda s: SimpleStrategy(),
        "least-loaded": lambda s: LeastLoadedStrategy(),
        "latency": lambda s: LatencyStrategy(seed=s),
        "cost": lambda s: CostStrategy(),
        "cost (respect_capacity=false)": lambda s: CostStrategy(respect_capacity=False),
        "balanced": lambda s: BalancedStrategy(seed=s),
    }


def format_table(results: Sequence[SimResult]) -> str:
    """A Markdown table of the results."""
    lines = [
        "| strategy | mean TTFT ms | p95 TTFT ms | mean price /1K | failed attempts | failed requests"
        " | forbidden picks |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    lines.extend(
        f"| {r.strategy} | {r.mean_ttft_ms:.0f} | {r.p95_ttft_ms:.0f} | {r.mean_cost:.5f} | {r.failed_attempts}"
        f" | {r.failed_requests} | {r.forbidden_picks} |"
        for r in results
    )
    return "\n".join(lines)


def main() -> None:
    """Print the comparison table for seed 1."""
    sys.stdout.write(format_table(run_all(default_factories())) + "\n")


if __name__ == "__main__":
    main()
