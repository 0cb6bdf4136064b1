"""The ``sample`` parameter: rank a random subset of a large snapshot, the rest follow unscored."""

from __future__ import annotations

from collections import Counter

import pytest

from tooti.routing import Candidate, Preferences
from tooti_router_strategies.balanced import BalancedStrategy
from tooti_router_strategies.cost import CostStrategy
from tooti_router_strategies.latency import LatencyStrategy
from tooti_router_strategies.least_loaded import LeastLoadedStrategy

PREFS = Preferences(model="m")
NODES = [
    Candidate(peer_id=f"p{i:02d}", models=frozenset({"m"}), in_flight=i % 5, capacity=4, ttft_ms=100.0 + 10 * i)
    for i in range(40)
]


@pytest.mark.parametrize("cls", [LeastLoadedStrategy, LatencyStrategy, CostStrategy, BalancedStrategy])
def test_sampled_rank_keeps_every_node_and_says_so(cls):
    decision = cls.from_params({"sample": 8, "seed": 3}).rank(NODES, PREFS)
    assert sorted(decision.peer_ids) == sorted(c.peer_id for c in NODES)
    assert "scored a random sample of 8, 32 unscored follow in snapshot order" in decision.reasons[0]
    tail = decision.peer_ids[8:]
    assert tail == sorted(tail)  # snapshot order


def test_sampled_head_is_ranked_among_itself():
    decision = LeastLoadedStrategy(sample=8, seed=5).rank(NODES, PREFS)
    head = decision.ordered[:8]
    loads = [c.in_flight for c in head]
    assert loads == sorted(loads)


def test_sampling_spreads_first_choice_but_prefers_good_nodes():
    s = LatencyStrategy(sample=8, seed=9, tolerance_ms=0, tolerance_ratio=0)
    firsts = Counter(s.rank(NODES, PREFS).peer_ids[0] for _ in range(400))
    assert len(firsts) > 10  # many different nodes get first place
    fast_half = sum(n for peer, n in firsts.items() if int(peer[1:]) < 20)
    assert fast_half > 0.9 * 400  # best of 8 random picks is almost always in the faster half


def test_sample_not_larger_than_snapshot_ranks_everything():
    decision = CostStrategy(sample=100).rank(NODES, PREFS)
    assert "sample" not in decision.reasons[0]
