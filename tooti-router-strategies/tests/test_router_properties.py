"""Invariants every strategy must keep, on arbitrary snapshots (hypothesis)."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tooti.routing import Candidate, Preferences, eligible, total_price
from tooti_router_strategies._common import FULL_SORT_MAX, SORTED_HEAD, order_indices
from tooti_router_strategies.balanced import BalancedStrategy
from tooti_router_strategies.cost import CostStrategy
from tooti_router_strategies.latency import LatencyStrategy
from tooti_router_strategies.least_loaded import LeastLoadedStrategy

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PEERS = [f"peer{i}" for i in range(12)]
REGIONS = st.sampled_from([None, "eu", "us"])
PRICES = st.none() | st.floats(min_value=0, max_value=0.01)


@st.composite
def candidates(draw):
    ids = draw(st.lists(st.sampled_from(PEERS), unique=True, max_size=len(PEERS)))
    return [
        Candidate(
            peer_id=peer,
            models=draw(st.frozensets(st.sampled_from(["m", "x"]))),
            in_flight=draw(st.integers(0, 20)),
            queued=draw(st.integers(0, 10)),
            capacity=draw(st.none() | st.integers(0, 16)),
            ttft_ms=draw(st.none() | st.floats(min_value=0, max_value=5000)),
            tokens_per_s=draw(st.none() | st.floats(min_value=0, max_value=200)),
            price_in_per_1k=draw(PRICES),
            price_out_per_1k=draw(PRICES),
            region=draw(REGIONS),
            cooling=draw(st.booleans()),
            recent_failures=draw(st.integers(0, 5)),
            reputation=draw(st.sampled_from([0.0, 0.5, 1.0])),
        )
        for peer in ids
    ]


preferences = st.builds(
    Preferences,
    model=st.just("m"),
    max_price=st.none() | st.floats(min_value=0, max_value=0.02),
    only=st.none() | st.frozensets(st.sampled_from(PEERS), min_size=1),
    ignore=st.frozensets(st.sampled_from(PEERS)),
    region=REGIONS,
)

STRATEGIES = {
    "least-loaded": LeastLoadedStrategy,
    "latency": lambda: LatencyStrategy(rng=random.Random(7)),
    "latency-optimistic": lambda: LatencyStrategy(rng=random.Random(7), unknown_ttft="optimistic"),
    "cost": CostStrategy,
    "cost-strict": lambda: CostStrategy(respect_capacity=False),
    "balanced": lambda: BalancedStrategy(rng=random.Random(7)),
    "balanced-2w": lambda: BalancedStrategy(rng=random.Random(7), cost_weight=0, failure_weight=0),
    "least-loaded-sampled": lambda: LeastLoadedStrategy(sample=3, seed=1),
    "latency-sampled": lambda: LatencyStrategy(sample=3, seed=1),
    "cost-sampled": lambda: CostStrategy(sample=3, seed=1),
    "balanced-sampled": lambda: BalancedStrategy(sample=3, seed=1),
}


def check_decision(decision, given):
    """Strategies only rank (hook API 3): exactly the candidates the gateway passed, reordered."""
    assert sorted(map(id, decision.ordered)) == sorted(map(id, given))
    assert decision.reasons
    assert decision.reasons[0].startswith(f"{decision.strategy}: {len(given)} candidates")
    ranked_lines = [r for r in decision.reasons if r.startswith("#")]
    names = [line.split()[1].rstrip(":") for line in ranked_lines]
    assert names == decision.peer_ids[: len(names)]
    if "scored a random sample of" not in decision.reasons[0]:  # unscored nodes get no reason line
        assert len(names) == min(3, len(decision.ordered))


@BOUNDED
@given(cands=candidates(), prefs=preferences)
def test_every_strategy_returns_a_permutation_of_what_the_gateway_passed(cands, prefs):
    given = eligible(cands, prefs)  # what the gateway hands a strategy
    for c in given:
        assert prefs.model in c.models
        assert c.reputation > 0
        assert prefs.max_price is None or total_price(c) <= prefs.max_price
        assert c.peer_id not in prefs.ignore
        assert prefs.only is None or c.peer_id in prefs.only
        assert prefs.region is None or c.region == prefs.region
    for make in STRATEGIES.values():
        strategy = make()
        decision = strategy.rank(given, prefs)
        assert decision.strategy == type(strategy).name
        check_decision(decision, given)


KEYS = st.floats(min_value=0, max_value=100) | st.integers(0, 5).map(float)


@settings(max_examples=40, deadline=None)
@given(
    primary=st.integers(0, 700).flatmap(lambda n: st.lists(KEYS, min_size=n, max_size=n)),
    salt=st.randoms(use_true_random=False),
)
def test_order_indices_sorts_the_head_and_keeps_the_tail_in_snapshot_order(primary, salt):
    second = [salt.choice([0.0, 1.0, 2.0]) for _ in primary]
    lazy = lambda idx: [second[i] for i in idx]  # noqa: E731 - a tie-break computed on demand
    for tiebreaks, passed in (((), ()), ((second,), (second,)), ((second,), (lazy,))):
        order = order_indices(primary, *passed)
        assert sorted(order) == list(range(len(primary)))
        full = lambda i, tb=tiebreaks: (primary[i], *(t[i] for t in tb), i)  # noqa: E731
        if len(primary) <= FULL_SORT_MAX:
            assert order == sorted(range(len(primary)), key=full)
            continue
        cut = sorted(primary)[SORTED_HEAD - 1]
        head = sorted((i for i, k in enumerate(primary) if k <= cut), key=full)
        tail = [i for i, k in enumerate(primary) if k > cut]
        assert order == head + tail


def test_large_snapshot_head_is_sorted_and_tail_complete():
    rng = random.Random(3)
    cands = [
        Candidate(peer_id=f"p{i}", models=frozenset({"m"}), ttft_ms=rng.uniform(10, 900), price_in_per_1k=rng.random())
        for i in range(2000)
    ]
    decision = CostStrategy().rank(cands, Preferences(model="m"))
    assert len(decision.ordered) == 2000
    head = [total_price(c) for c in decision.ordered[:SORTED_HEAD]]
    assert head == sorted(head)
    assert head[-1] <= min(total_price(c) for c in decision.ordered[SORTED_HEAD:])


def big_snapshot(seed, n=800):
    rng = random.Random(seed)
    return [
        Candidate(
            peer_id=f"n{i}",
            models=frozenset(rng.choice([{"m"}, {"m", "x"}, {"x"}])),
            in_flight=rng.randint(0, 8),
            queued=rng.choice([0, 0, 0, 2]),
            capacity=rng.choice([None, 0, 1, 4, 8]),
            ttft_ms=rng.choice([None, rng.uniform(10, 3000)]),
            price_in_per_1k=rng.choice([None, 0.001, 0.002, rng.uniform(0, 0.01)]),
            region=rng.choice([None, "eu", "us"]),
            cooling=rng.random() < 0.05,
            recent_failures=rng.choice([0, 0, 0, 1, 3]),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(
    "prefs",
    [
        Preferences(model="m"),
        Preferences(model="m", max_price=0.004, region="eu", ignore=frozenset({"n1", "n2"})),
        Preferences(model="m", only=frozenset(f"n{i}" for i in range(0, 800, 2))),
    ],
)
def test_large_snapshots_are_permuted_whole(seed, prefs):
    given = eligible(big_snapshot(seed), prefs)
    for make in STRATEGIES.values():
        strategy = make()
        check_decision(strategy.rank(given, prefs), given)


def test_large_snapshot_least_loaded_head_is_in_full_key_order():
    cands = eligible(big_snapshot(4), Preferences(model="m"))
    decision = LeastLoadedStrategy(queue_penalty=0, unknown_ttft="optimistic").rank(cands, Preferences(model="m"))
    assert len(decision.ordered) > FULL_SORT_MAX
    known = [c.ttft_ms for c in decision.ordered if c.ttft_ms is not None]
    best = min(known)

    def key(c):
        return (
            (c.in_flight + c.queued) / (c.capacity or 1),
            c.recent_failures,
            best if c.ttft_ms is None else c.ttft_ms,
        )

    head = [key(c) for c in decision.ordered[:SORTED_HEAD]]
    assert head == sorted(head)
    assert head[-1][0] <= min(key(c)[0] for c in decision.ordered[SORTED_HEAD:])
