from __future__ import annotations

from tooti.routing import Candidate, Preferences, eligible
from tooti_router_strategies.cost import CostStrategy

PREFS = Preferences(model="m")


def cand(peer, price_in=None, price_out=None, **kw):
    return Candidate(peer_id=peer, models=frozenset({"m"}), price_in_per_1k=price_in, price_out_per_1k=price_out, **kw)


def test_cheapest_total_price_first_and_unpriced_is_free():
    cands = [cand("dear", 0.003, 0.003), cand("cheap-in", 0.0001, 0.004), cand("cheap", 0.001, 0.001), cand("free")]
    assert CostStrategy().rank(cands, PREFS).peer_ids == ["free", "cheap", "cheap-in", "dear"]


def test_equal_prices_are_broken_by_latency():
    cands = [cand("slow", 0.001, ttft_ms=800.0), cand("fast", 0.001, ttft_ms=90.0), cand("dear", 0.01, ttft_ms=10.0)]
    assert CostStrategy().rank(cands, PREFS).peer_ids == ["fast", "slow", "dear"]


def test_max_price_is_a_ceiling():
    cands = [cand("a", 0.001, 0.001), cand("b", 0.002, 0.002), cand("c", 0.0005)]
    prefs = Preferences(model="m", max_price=0.002)
    decision = CostStrategy().rank(eligible(cands, prefs), prefs)  # the gateway filters, the strategy ranks
    assert decision.peer_ids == ["c", "a"]
    assert "max_price 0.002" in decision.reasons[0]


def test_full_cheap_node_spills_to_the_next_cheapest():
    cands = [cand("cheap-full", 0.0001, in_flight=2, capacity=2), cand("dearer", 0.001, in_flight=1, capacity=2)]
    decision = CostStrategy().rank(cands, PREFS)
    assert decision.peer_ids == ["dearer", "cheap-full"]
    assert "full (after free nodes)" in decision.reasons[2]


def test_strict_mode_ignores_capacity():
    cands = [cand("cheap-full", 0.0001, in_flight=2, capacity=2), cand("dearer", 0.001, in_flight=1, capacity=2)]
    assert CostStrategy(respect_capacity=False).rank(cands, PREFS).peer_ids == ["cheap-full", "dearer"]
