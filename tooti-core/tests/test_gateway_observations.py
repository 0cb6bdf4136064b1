"""Passive measurements and candidate building: EMAs, cooldown expiry, failure window, model memory."""

from __future__ import annotations

from tooti.gateway.candidates import ModelMemory, build_candidates
from tooti.gateway.observations import Observations
from tooti.network import AdvertisedModel, NodeView


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def node(peer, *models, **kw):
    return NodeView(peer_id=peer, models=tuple(AdvertisedModel(name=m, aliases=(f"{m}:latest",)) for m in models), **kw)


def test_cooldown_expires_and_failures_age_out():
    clock = Clock()
    obs = Observations(cooldown_sec=10, clock=clock)
    obs.failed("a", "BackendUnavailable")
    assert obs.in_cooldown("a")
    assert obs.recent_failures("a") == 1
    clock.now += 11
    assert not obs.in_cooldown("a")
    assert obs.recent_failures("a") == 1
    clock.now += 60
    assert obs.recent_failures("a") == 0
    obs.failed("b", "ModelNotFound", cooldown=False)
    assert not obs.in_cooldown("b")


def test_in_flight_and_emas():
    obs = Observations(cooldown_sec=0)
    obs.started("a")
    obs.started("a")
    obs.finished("a")
    assert obs.stats("a").in_flight == 1
    assert obs.total_in_flight() == 1
    obs.first_token("a", 100.0)
    obs.first_token("a", 200.0)
    assert 100.0 < obs.stats("a").ttft_ms < 200.0
    obs.succeeded("a", 50, 0.5)
    assert obs.stats("a").tokens_per_s == 100.0
    obs.failed("a", "x")
    assert not obs.in_cooldown("a")  # cooldown_sec 0 disables resting


def test_forget_keeps_busy_and_live_peers():
    obs = Observations(cooldown_sec=1)
    for p in ("live", "gone", "gone-busy"):
        obs.stats(p)
    obs.started("gone-busy")
    obs.forget_except({"live"})
    assert obs.peek("gone") is None
    assert obs.peek("live") is not None
    assert obs.peek("gone-busy") is not None


def test_candidates_prefer_gateway_measurements():
    clock = Clock()
    obs = Observations(cooldown_sec=5, clock=clock)
    nodes = [node("a", "m", in_flight=1, ttft_ms=500.0), node("b", "m", ttft_ms=80.0), node("c", "other")]
    for _ in range(3):
        obs.started("a")
    obs.first_token("b", 40.0)
    obs.failed("b", "x")
    cands = {c.peer_id: c for c in build_candidates(nodes, "m:latest", obs)}
    assert set(cands) == {"a", "b"}
    assert cands["a"].in_flight == 3
    assert cands["a"].ttft_ms == 500.0
    assert cands["b"].ttft_ms == 40.0
    assert cands["b"].in_cooldown
    assert cands["b"].recent_failures == 1
    assert not build_candidates(nodes, "m", obs, ignore_cooldown=True)[1].in_cooldown


def test_model_memory():
    clock = Clock()
    memory = ModelMemory(ttl_s=60, clock=clock)
    memory.note([node("a", "m")])
    assert memory.known("m")
    assert memory.known("m:latest")
    assert not memory.known("other")
    clock.now += 61
    assert not memory.known("m")


def test_served_names_recomputed_only_when_models_change():
    from tooti.gateway.candidates import ServedNames

    served = ServedNames()
    first = node("a", "m")
    names = served(first)
    assert names == {"m", "m:latest"}
    again = NodeView(peer_id="a", models=first.models, age_s=3.0)  # a new snapshot, same heartbeat
    assert served(again) is names
    changed = node("a", "n")
    assert served(changed) == {"n", "n:latest"}
    served.forget_except(set())
    assert len(served) == 0
