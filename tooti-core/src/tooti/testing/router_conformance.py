"""``check_router``: the contract every routing strategy must keep (hook API 3), as one call.

Strategy authors call it from a test with an instance of their strategy::

    from tooti.testing.router_conformance import check_router

    def test_my_strategy_keeps_the_contract():
        check_router(MyStrategy.from_params({}))

It ranks varied snapshots (empty, one node, ties, unmeasured nodes, cooling and low-reputation
nodes, prices, a large shortlist) the way the gateway hands them over, already eligible, and checks
that every answer is a :class:`~tooti.routing.Decision` whose ``ordered`` is a permutation of the
input (nothing dropped, added or duplicated), that ``reasons`` are strings, and that the input
list was not mutated. It raises ``AssertionError`` naming the snapshot that broke a rule.
"""

# ruff: noqa: S101 - a check shipped for test suites: plain asserts, as pytest reports them

from __future__ import annotations

import random
from typing import TYPE_CHECKING

from tooti.routing.protocol import Candidate, Decision, Preferences

if TYPE_CHECKING:
    from tooti.routing.protocol import RoutingStrategy

__all__ = ["check_router", "conformance_snapshots"]

_MODEL = "m"


def _node(i: int, rng: random.Random, **fields: object) -> Candidate:
    base: dict[str, object] = {
        "peer_id": f"12D3KooConformance{i:04d}",
        "models": frozenset({_MODEL, f"{_MODEL}:latest"}),
        "in_flight": rng.randint(0, 8),
        "queued": rng.choice([0, 0, 0, 3]),
        "capacity": rng.choice([None, 0, 1, 4, 16]),
        "ttft_ms": rng.choice([None, rng.uniform(5, 3000)]),
        "tokens_per_s": rng.choice([None, rng.uniform(1, 200)]),
        "price_in_per_1k": rng.choice([None, 0.0, rng.uniform(0, 0.01)]),
        "price_out_per_1k": rng.choice([None, rng.uniform(0, 0.01)]),
        "region": rng.choice([None, "eu", "us"]),
        "cooling": rng.random() < 0.1,
        "recent_failures": rng.choice([0, 0, 0, 1, 5]),
        "reputation": rng.choice([1.0, 1.0, 0.5, 0.01]),
    }
    base.update(fields)
    return Candidate(**base)  # type: ignore[arg-type]  # built from a typed mapping above


def conformance_snapshots(seed: int = 0) -> dict[str, list[Candidate]]:
    """Named snapshots a strategy must rank; every candidate in them is eligible for model ``m``."""
    rng = random.Random(seed)
    return {
        "empty": [],
        "one node": [_node(0, rng)],
        "identical nodes": [_node(i, rng, in_flight=1, queued=0, capacity=4, ttft_ms=100.0) for i in range(5)],
        "nothing measured": [
            _node(i, rng, ttft_ms=None, tokens_per_s=None, price_in_per_1k=None, price_out_per_1k=None)
            for i in range(6)
        ],
        "all cooling": [_node(i, rng, cooling=True, recent_failures=2) for i in range(4)],
        "varied": [_node(i, rng) for i in range(12)],
        "shortlist": [_node(i, rng) for i in range(80)],
    }


def check_router(strategy: RoutingStrategy, *, seeds: tuple[int, ...] = (0, 1, 2)) -> None:
    """Rank every :func:`conformance_snapshots` snapshot and check the contract (see module doc)."""
    name = type(strategy).name
    for seed in seeds:
        for label, snapshot in conformance_snapshots(seed).items():
            for prefs in (Preferences(model=_MODEL), Preferences(model=f"{_MODEL}:latest", strategy=name)):
                given = list(snapshot)
                decision = strategy.rank(given, prefs)
                where = f"{name} on {label!r} (seed {seed}, model {prefs.model!r})"
                assert given == snapshot, f"{where}: the input list was mutated"
                assert isinstance(decision, Decision), f"{where}: rank returned {type(decision).__name__}"
                got = sorted(map(id, decision.ordered))
                assert got == sorted(map(id, snapshot)), f"{where}: ordered is not a permutation of the input"
                assert all(isinstance(r, str) for r in decision.reasons), f"{where}: a reason is not a string"
