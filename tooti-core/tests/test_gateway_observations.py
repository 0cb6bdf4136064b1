"""Passive measurements and candidate building: EMAs, cooldown expiry, failure window, model memory."""

from __future__ import annotations

from tooti.gateway.candidates import candidate_for
from tooti.gateway.observations import Observations
from tooti.network import AdvertisedModel, NodeView
from tooti.routing.table import RouteTable


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


def _candidates(table, model, obs):
    now = obs.now()
    return {c.peer_id: c for c in (candidate_for(e, model, obs, now) for e in table.select(model, now))}


def test_candidates_prefer_gateway_measurements():
    clock = Clock()
    obs = Observations(cooldown_sec=5, clock=clock)
    table = RouteTable(15.0, clock=clock)
    for view in (node("a", "m", in_flight=1, ttft_ms=500.0), node("b", "m", ttft_ms=80.0), node("c", "other")):
        table.put(view)
    for _ in range(3):
        obs.started("a")
    obs.first_token("b", 40.0)
    obs.failed("b", "x")
    cands = _candidates(table, "m:latest", obs)
    assert set(cands) == {"a", "b"}
    assert cands["a"].in_flight == 3
    assert cands["a"].ttft_ms == 500.0
    assert cands["b"].ttft_ms == 40.0
    assert cands["b"].cooling
    assert cands["b"].recent_failures == 1
    assert cands["a"].reputation == 1.0


def test_prepared_candidates_are_reused_until_something_changes():
    clock = Clock()
    obs = Observations(cooldown_sec=5, clock=clock)
    table = RouteTable(1e9, clock=clock)  # the node never goes stale here
    table.put(node("a", "m"))
    first = _candidates(table, "m", obs)["a"]
    assert _candidates(table, "m", obs)["a"] is first  # nothing changed: the same object
    obs.started("a")  # an observation marks it out of date
    busy = _candidates(table, "m", obs)["a"]
    assert busy is not first
    assert busy.in_flight == 1
    obs.failed("a", "x")
    cooling = _candidates(table, "m", obs)["a"]
    assert cooling.cooling
    assert cooling.recent_failures == 1
    clock.now += 5.01  # time alone ends the cooldown ...
    assert not _candidates(table, "m", obs)["a"].cooling
    clock.now += 55  # ... and ages the failure out of the window
    assert _candidates(table, "m", obs)["a"].recent_failures == 0
    obs.set_reputation("a", 0.25)
    assert _candidates(table, "m", obs)["a"].reputation == 0.25
    table.put(node("a", "m", queued=4))  # a new heartbeat
    assert _candidates(table, "m", obs)["a"].queued == 4


def test_model_memory():
    clock = Clock()
    table = RouteTable(15.0, clock=clock)
    table.put(node("a", "m"))
    table.remove("a")
    assert table.served_recently("m")
    assert table.served_recently("m:latest")
    assert not table.served_recently("other")
    clock.now += 601
    assert not table.served_recently("m")
