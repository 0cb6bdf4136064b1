"""The route table: routing data prepared on heartbeat arrival, bounded shortlists, cheap pruning."""

from __future__ import annotations

import random

from tooti.network import AdvertisedModel, NodeView
from tooti.routing.table import HEAD_PER_KEY, RANDOM_PICKS, SMALL, RouteTable


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def view(peer, *models, **kw):
    return NodeView(peer_id=peer, models=tuple(AdvertisedModel(name=m, aliases=(f"{m}:latest",)) for m in models), **kw)


def test_a_small_model_gives_every_live_node_sorted_by_peer_id():
    clock = Clock()
    table = RouteTable(15.0, clock=clock)
    for peer in ("c", "a", "b"):
        table.put(view(peer, "m"))
    table.put(view("x", "other"))
    assert [e.peer_id for e in table.select("m:latest", clock.now)] == ["a", "b", "c"]
    assert [e.peer_id for e in table.select("m", clock.now, only=["c", "x", "zz"])] == ["c"]
    assert table.select("nothing", clock.now) == []


def test_each_heartbeat_replaces_the_models_of_its_node():
    clock = Clock()
    table = RouteTable(15.0, clock=clock)
    table.put(view("a", "m", "n"))
    table.put(view("a", "n"))
    assert table.select("m", clock.now) == []
    assert [e.peer_id for e in table.select("n", clock.now)] == ["a"]
    assert table.count("m") == 0
    assert table.served_recently("m")  # 503, not 404, for a while


def test_stale_nodes_are_not_selected_and_pruning_walks_only_the_expired():
    clock = Clock()
    table = RouteTable(15.0, clock=clock)
    table.put(view("old", "m"))
    clock.now += 10
    table.put(view("new", "m"))
    clock.now += 6  # "old" silent for 16 s
    assert [e.peer_id for e in table.select("m", clock.now)] == ["new"]
    assert table.get("old") is None
    assert table.prune() == ["old"]
    assert [v.peer_id for v in table.views()] == ["new"]
    assert table.views()[0].age_s == 6


def test_a_large_model_gives_a_bounded_shortlist_holding_the_best_by_each_key():
    clock = Clock()
    table = RouteTable(15.0, clock=clock, rng=random.Random(1))
    rng = random.Random(2)
    for i in range(5000):
        table.put(
            NodeView(
                peer_id=f"p{i:05d}",
                models=(AdvertisedModel(name="m", price_in_per_1k=rng.uniform(0.001, 1)),),
                in_flight=rng.randint(1, 8),
                capacity=8,
                ttft_ms=rng.uniform(50, 5000),
            )
        )
    table.put(NodeView(peer_id="idle", models=(AdvertisedModel(name="m", price_in_per_1k=0.5),), capacity=8))
    table.put(view("fastest", "m", in_flight=8, capacity=8, ttft_ms=1.0))
    table.put(NodeView(peer_id="cheapest", models=(AdvertisedModel(name="m", price_in_per_1k=0.0),), in_flight=8))
    picked = table.select("m", clock.now)
    assert table.count("m") > SMALL
    assert len(picked) <= 3 * HEAD_PER_KEY + RANDOM_PICKS
    assert {"idle", "fastest", "cheapest"} <= {e.peer_id for e in picked}
    assert len({e.peer_id for e in picked}) == len(picked)
    # The random part changes between decisions, so every node is tried now and then.
    seen = set()
    for _ in range(50):
        seen.update(e.peer_id for e in table.select("m", clock.now))
    assert len(seen) > 200


def test_the_head_follows_heartbeats_within_a_second():
    clock = Clock()
    table = RouteTable(15.0, clock=clock, rng=random.Random(1))
    for i in range(SMALL + 50):
        table.put(view(f"p{i:03d}", "m", in_flight=4, capacity=4, ttft_ms=900.0))
    table.select("m", clock.now)  # head computed
    table.put(view("p999", "m", in_flight=0, capacity=4, ttft_ms=5.0))
    clock.now += 1.0
    assert "p999" in {e.peer_id for e in table.select("m", clock.now)}
