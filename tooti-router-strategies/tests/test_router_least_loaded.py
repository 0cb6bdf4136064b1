from __future__ import annotations

from tooti.routing import Candidate, Preferences
from tooti_router_strategies.least_loaded import LeastLoadedStrategy

PREFS = Preferences(model="m")


def cand(peer, **kw):
    return Candidate(peer_id=peer, models=frozenset({"m"}), **kw)


def test_load_is_relative_to_capacity():
    cands = [
        cand("one-slot-busy", in_flight=1, capacity=1),
        cand("big-quarter", in_flight=3, queued=1, capacity=16),
        cand("unknown-capacity-idle"),
        cand("half", in_flight=2, capacity=4),
    ]
    assert LeastLoadedStrategy().rank(cands, PREFS).peer_ids == [
        "unknown-capacity-idle",
        "big-quarter",
        "half",
        "one-slot-busy",
    ]


def test_queued_requests_count_as_load():
    cands = [cand("queued", in_flight=1, queued=3, capacity=8), cand("running", in_flight=2, capacity=8)]
    assert LeastLoadedStrategy().rank(cands, PREFS).peer_ids == ["running", "queued"]


def test_ties_go_to_fewer_failures_then_faster():
    cands = [
        cand("slow", ttft_ms=900.0),
        cand("failing", ttft_ms=50.0, recent_failures=2),
        cand("fast", ttft_ms=100.0),
    ]
    assert LeastLoadedStrategy().rank(cands, PREFS).peer_ids == ["fast", "slow", "failing"]


def test_reasons_show_the_load_arithmetic():
    decision = LeastLoadedStrategy().rank([cand("a", in_flight=2, queued=1, capacity=4)], PREFS)
    assert decision.reasons[1] == (
        "#1 a: load 0.75 (2 in flight + 1 queued, capacity 4), 0 recent failures, expected ttft 0 ms"
    )


def test_explain_limits_reason_lines():
    cands = [cand(f"p{i}", in_flight=i) for i in range(5)]
    reasons = LeastLoadedStrategy(explain=2).rank(cands, PREFS).reasons
    assert len(reasons) == 4
    assert reasons[-1].startswith("... 3 more ranked")


def test_no_candidates_give_an_empty_decision_with_a_reason():
    decision = LeastLoadedStrategy().rank([], PREFS)
    assert decision.ordered == ()
    assert decision.reasons == ("least-loaded: 0 candidates, lowest (in flight + queued) / capacity first",)
