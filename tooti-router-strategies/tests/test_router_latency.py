from __future__ import annotations

import random
from collections import Counter

from tooti.routing import Candidate, Preferences
from tooti_router_strategies.latency import LatencyStrategy

PREFS = Preferences(model="m")


def cand(peer, **kw):
    return Candidate(peer_id=peer, models=frozenset({"m"}), **kw)


def firsts(strategy, cands, n=300):
    return Counter(strategy.rank(cands, PREFS).peer_ids[0] for _ in range(n))


def test_without_a_band_order_is_fastest_first():
    cands = [cand("c", ttft_ms=300.0), cand("a", ttft_ms=100.0), cand("b", ttft_ms=200.0)]
    s = LatencyStrategy(tolerance_ms=0, tolerance_ratio=0, rng=random.Random(1))
    assert s.rank(cands, PREFS).peer_ids == ["a", "b", "c"]


def test_near_best_band_shares_the_first_place_and_excludes_slow_nodes():
    cands = [cand("a", ttft_ms=100.0), cand("b", ttft_ms=110.0), cand("c", ttft_ms=118.0), cand("slow", ttft_ms=500.0)]
    s = LatencyStrategy(tolerance_ms=20, tolerance_ratio=0, rng=random.Random(2))
    counts = firsts(s, cands)
    assert set(counts) == {"a", "b", "c"}
    assert min(counts.values()) > 60  # roughly a third each
    assert all(s.rank(cands, PREFS).peer_ids[-1] == "slow" for _ in range(50))


def test_tolerance_ratio_widens_the_band_for_slow_models():
    cands = [cand("a", ttft_ms=1000.0), cand("b", ttft_ms=1090.0), cand("c", ttft_ms=1300.0)]
    s = LatencyStrategy(tolerance_ms=20, tolerance_ratio=0.1, rng=random.Random(3))
    assert set(firsts(s, cands)) == {"a", "b"}


def test_default_rng_still_spreads_load():
    cands = [cand("a", ttft_ms=100.0), cand("b", ttft_ms=100.0)]
    assert set(firsts(LatencyStrategy(), cands, n=200)) == {"a", "b"}


def test_unknown_ttft_defaults_to_the_median():
    cands = [
        cand("fast", ttft_ms=100.0),
        cand("mid", ttft_ms=300.0),
        cand("slow", ttft_ms=900.0),
        cand("new"),
    ]
    s = LatencyStrategy(tolerance_ms=0, tolerance_ratio=0, rng=random.Random(1))
    decision = s.rank(cands, PREFS)
    assert decision.peer_ids == ["fast", "mid", "new", "slow"]
    assert "not measured: assumed median 300 ms" in decision.reasons[3]


def test_optimistic_unknown_ttft_explores_new_nodes():
    cands = [cand("fast", ttft_ms=100.0), cand("slow", ttft_ms=900.0), cand("new")]
    s = LatencyStrategy(tolerance_ms=0, tolerance_ratio=0, unknown_ttft="optimistic", rng=random.Random(4))
    assert set(firsts(s, cands, n=100)) == {"fast", "new"}


def test_no_measurement_at_all_is_a_random_choice():
    cands = [cand(f"p{i}") for i in range(4)]
    assert len(firsts(LatencyStrategy(rng=random.Random(5)), cands, n=200)) == 4


def test_queued_requests_raise_expected_ttft():
    cands = [cand("busy", ttft_ms=100.0, queued=4, capacity=1), cand("idle", ttft_ms=200.0, capacity=1)]
    s = LatencyStrategy(tolerance_ms=0, tolerance_ratio=0, rng=random.Random(1))
    assert s.rank(cands, PREFS).peer_ids == ["idle", "busy"]  # 100 x (1 + 4/1) = 500 ms
    s = LatencyStrategy(tolerance_ms=0, tolerance_ratio=0, queue_penalty=0, rng=random.Random(1))
    assert s.rank(cands, PREFS).peer_ids == ["busy", "idle"]


def test_recent_failures_add_a_penalty():
    cands = [cand("flaky", ttft_ms=100.0, recent_failures=1), cand("steady", ttft_ms=250.0)]
    s = LatencyStrategy(tolerance_ms=0, tolerance_ratio=0, rng=random.Random(1))
    decision = s.rank(cands, PREFS)
    assert decision.peer_ids == ["steady", "flaky"]  # 100 + 200 = 300 ms
    assert "1 recent failures x 200 ms" in decision.reasons[2]


def test_reasons_name_the_band():
    cands = [cand("a", ttft_ms=100.0), cand("b", ttft_ms=105.0)]
    decision = LatencyStrategy(rng=random.Random(1)).rank(cands, PREFS)
    assert decision.reasons[0] == "latency: 2 candidates, band <= 120 ms holds 2"
    assert all("near-best band" in r for r in decision.reasons[1:])
