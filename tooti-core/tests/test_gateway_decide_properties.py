"""The gateway's decision on arbitrary networks (hypothesis): eligibility once, cooling last, bounded.

Whatever the strategy, what ``Gateway.decide`` returns never breaks a preference, never holds a
stale, quarantined or wrong-model node, puts every cooling node after every warm one, and holds
every eligible node when the model is served by at most ``SMALL`` nodes.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tooti.config.model import Config
from tooti.gateway.api_errors import ApiError
from tooti.gateway.metrics import GatewayMetrics
from tooti.gateway.service import Gateway
from tooti.network import AdvertisedModel, NodeView
from tooti.routing import Preferences, total_price
from tooti.routing.table import SMALL, RouteTable
from tooti.testing import make_plugin_host

PEERS = [f"12D3Koo{i:03d}" for i in range(80)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class TableNetwork:
    peer_id = "gateway"

    def __init__(self, table: RouteTable) -> None:
        self.table = table

    def nodes(self) -> list[NodeView]:
        return self.table.views()

    def route_table(self) -> RouteTable:
        return self.table


node = st.fixed_dictionaries(
    {
        "models": st.sampled_from([("m",), ("m", "x"), ("x",)]),
        "price": st.none() | st.floats(0, 0.01),
        "region": st.none() | st.sampled_from(["eu", "us"]),
        "in_flight": st.integers(0, 8),
        "ttft_ms": st.none() | st.floats(1, 3000),
        "age_s": st.sampled_from([0.0, 5.0, 20.0]),  # 20 s: stale (3 x 5 s)
        "failed": st.booleans(),
        "reputation": st.sampled_from([0.0, 0.5, 1.0]),
    }
)
preferences = st.builds(
    Preferences,
    model=st.just("m"),
    strategy=st.just("simple"),
    max_price=st.none() | st.floats(0, 0.02),
    only=st.none() | st.frozensets(st.sampled_from(PEERS), min_size=1, max_size=20),
    ignore=st.frozensets(st.sampled_from(PEERS), max_size=20),
    region=st.none() | st.sampled_from(["eu", "us"]),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes=st.lists(node, max_size=len(PEERS)), prefs=preferences)
def test_decide_keeps_every_rule(nodes, prefs):
    clock = Clock()
    table = RouteTable(15.0, clock=clock)
    for peer, spec in zip(PEERS, nodes, strict=False):
        models = tuple(AdvertisedModel(name=m, price_in_per_1k=spec["price"]) for m in spec["models"])
        table.put(
            NodeView(
                peer_id=peer, models=models, in_flight=spec["in_flight"], ttft_ms=spec["ttft_ms"], region=spec["region"]
            ),
            now=clock.now - spec["age_s"],
        )
    gateway = Gateway(Config(), TableNetwork(table), make_plugin_host(), GatewayMetrics())
    gateway.observations._clock = clock
    for peer, spec in zip(PEERS, nodes, strict=False):
        if spec["failed"]:
            gateway.observations.failed(peer, "test")
        gateway.observations.set_reputation(peer, spec["reputation"])
    specs = dict(zip(PEERS, nodes, strict=False))

    def allowed(peer):
        spec = specs[peer]
        price = spec["price"] or 0.0
        return (
            "m" in spec["models"]
            and spec["age_s"] < 15
            and spec["reputation"] > 0
            and peer not in prefs.ignore
            and (prefs.only is None or peer in prefs.only)
            and (prefs.max_price is None or price <= prefs.max_price)
            and (prefs.region is None or spec["region"] == prefs.region)
        )

    expected = {p for p in specs if allowed(p)}
    if not expected:
        with pytest.raises(ApiError) as refused:
            gateway.decide(prefs)
        assert refused.value.status in (404, 503)
        return
    decision = gateway.decide(prefs)
    got = decision.peer_ids
    assert len(got) == len(set(got))
    assert set(got) <= expected
    for c in decision.ordered:
        assert total_price(c) == (specs[c.peer_id]["price"] or 0.0)
        assert c.cooling == specs[c.peer_id]["failed"]
    flags = [c.cooling for c in decision.ordered]
    assert flags == sorted(flags)  # every warm node before every cooling one
    if table.count("m") <= SMALL:
        assert set(got) == expected
