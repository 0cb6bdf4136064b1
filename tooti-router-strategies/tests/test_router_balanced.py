from __future__ import annotations

import random

import pytest

from tooti.routing import Candidate, Preferences
from tooti_router_strategies.balanced import BalancedStrategy

PREFS = Preferences(model="m")


def cand(peer, **kw):
    return Candidate(peer_id=peer, models=frozenset({"m"}), **kw)


NODES = [
    cand("fast-dear", ttft_ms=100.0, price_in_per_1k=0.004, in_flight=1, capacity=4),
    cand("slow-cheap", ttft_ms=800.0, price_in_per_1k=0.0005, in_flight=1, capacity=4),
    cand("busy", ttft_ms=300.0, price_in_per_1k=0.001, in_flight=4, capacity=4),
    cand("flaky", ttft_ms=300.0, price_in_per_1k=0.001, in_flight=1, capacity=4, recent_failures=3),
]


def only(weight, **kw):
    weights = {"load_weight": 0.0, "latency_weight": 0.0, "cost_weight": 0.0, "failure_weight": 0.0, weight: 1.0}
    return BalancedStrategy(tolerance=0, rng=random.Random(1), **weights, **kw)


@pytest.mark.parametrize(
    ("weight", "first"),
    [("latency_weight", "fast-dear"), ("cost_weight", "slow-cheap"), ("load_weight", "fast-dear")],
)
def test_a_single_weight_reduces_to_that_criterion(weight, first):
    assert only(weight).rank(NODES, PREFS).peer_ids[0] == first


def test_latency_only_orders_by_expected_ttft():
    assert only("latency_weight").rank(NODES, PREFS).peer_ids == ["fast-dear", "busy", "flaky", "slow-cheap"]


def test_dominated_node_is_last_and_dominant_first():
    nodes = [
        cand("worst", ttft_ms=900.0, price_in_per_1k=0.01, in_flight=3, capacity=4, recent_failures=2),
        cand("best", ttft_ms=100.0, price_in_per_1k=0.001, in_flight=0, capacity=4),
        cand("middle", ttft_ms=400.0, price_in_per_1k=0.005, in_flight=2, capacity=4, recent_failures=1),
    ]
    assert BalancedStrategy(rng=random.Random(1)).rank(nodes, PREFS).peer_ids == ["best", "middle", "worst"]


def test_score_components_add_up_in_the_reasons():
    nodes = [cand("a", ttft_ms=100.0, price_in_per_1k=0.002, in_flight=1, capacity=2), cand("b", ttft_ms=200.0)]
    decision = BalancedStrategy(tolerance=0, rng=random.Random(1)).rank(nodes, PREFS)
    # a: load 0.35*0.5/0.5 + ttft 0.35*100/200 + price 0.2*0.002/0.002 = 0.725; b: 0.35
    assert decision.peer_ids == ["b", "a"]
    assert decision.reasons[1].startswith("#1 b: score 0.350 = load 0.000 (0.00) + ttft 0.350 (200 ms)")
    assert decision.reasons[2].startswith("#2 a: score 0.725 = load 0.350 (0.50) + ttft 0.175 (100 ms)")


def test_equal_nodes_share_first_place():
    nodes = [cand(f"p{i}", ttft_ms=100.0) for i in range(3)]
    s = BalancedStrategy(rng=random.Random(9))
    assert {s.rank(nodes, PREFS).peer_ids[0] for _ in range(100)} == {"p0", "p1", "p2"}
