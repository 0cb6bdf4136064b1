"""The strategies inside a real gateway (LocalNetwork + FakeBackend): preferences steer the choice."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import Config, GatewaySection, RoutingSection, VerificationSection
from tooti.errors import ConfigError
from tooti.gateway import create_app
from tooti.network import AdvertisedModel
from tooti.node.local import LocalNetwork
from tooti.plugins.host import PluginHost
from tooti.testing import FakeBackend

pytestmark = pytest.mark.anyio

CHAT = {"model": "m", "messages": [{"role": "user", "content": "hello"}]}
DEBUG = {"x-tooti-debug": "1"}
NO_CANARIES = GatewaySection(verification=VerificationSection(enabled=False))
# name: (price in = out per 1K, heartbeat TTFT ms, region); total prices 0.0002, 0.002, 0.008
NODES = {"cheap": (0.0001, 900.0, "eu"), "mid": (0.001, 300.0, "eu"), "fast": (0.004, 50.0, "us")}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def network():
    net = LocalNetwork()
    for peer, (price, ttft, region) in NODES.items():
        model = AdvertisedModel(name="m", backend="fake", price_in_per_1k=price, price_out_per_1k=price)
        net.add_node(peer, FakeBackend(models=("m",), chunks=2), [model], ttft_ms=ttft, region=region, capacity=4)
    return net


@pytest.fixture
async def client(network):
    # A fresh app per test: the gateway's own TTFT measurements of FakeBackend would otherwise
    # replace the heartbeat values the assertions rely on.
    # Strategy ranking without canaries: while no node is verified, trust routes one at random.
    app = create_app(Config(gateway=NO_CANARIES), network, PluginHost(environ={}))
    async with AsyncTestClient(app) as c:
        yield c


async def served_by(client, body=None, headers=None):
    r = await client.post("/v1/chat/completions", json={**CHAT, **(body or {})}, headers={**DEBUG, **(headers or {})})
    assert r.status_code == 200, r.text
    return r.headers["x-tooti-node"], r.headers["x-tooti-route"]


async def test_cost_by_header_picks_the_cheapest_and_explains_it(client):
    node, route = await served_by(client, headers={"x-tooti-strategy": "cost"})
    assert node == "cheap"
    assert "strategy=cost" in route
    assert "#1 cheap: price 0.0002/1K tokens" in route


async def test_latency_by_body_picks_the_fastest(client):
    node, route = await served_by(client, body={"tooti": {"strategy": "latency"}})
    assert node == "fast"
    assert "strategy=latency" in route


async def test_body_wins_over_header(client):
    node, _ = await served_by(client, body={"tooti": {"strategy": "latency"}}, headers={"x-tooti-strategy": "cost"})
    assert node == "fast"


async def test_ignore_only_region_and_max_price_are_honoured(client):
    assert (await served_by(client, body={"tooti": {"strategy": "cost", "ignore": ["cheap"]}}))[0] == "mid"
    assert (await served_by(client, headers={"x-tooti-strategy": "cost", "x-tooti-only": "fast,mid"}))[0] == "mid"
    assert (await served_by(client, headers={"x-tooti-strategy": "latency", "x-tooti-region": "eu"}))[0] == "mid"
    node, _ = await served_by(client, body={"tooti": {"strategy": "latency", "max_price": 0.001}})
    assert node == "cheap"


async def test_default_strategy_is_balanced(client):
    _, route = await served_by(client)
    assert "strategy=balanced" in route
    assert "score" in route


async def test_bad_preference_is_a_400_naming_the_field(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "tooti": {"max_price": -1}})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "tooti.max_price"
    r = await client.post("/v1/chat/completions", json=CHAT, headers={"x-tooti-only": "not a peer"})
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "x-tooti-only"


async def test_preferences_excluding_every_node_give_503(client):
    r = await client.post("/v1/chat/completions", json={**CHAT, "tooti": {"only": ["nobody"]}})
    assert r.status_code == 503


def test_bad_strategy_params_fail_at_start_with_the_config_path(network):
    config = Config(
        routing=RoutingSection(strategy="latency", params={"latency": {"tolerance_ms": "20ms"}}), gateway=NO_CANARIES
    )
    with pytest.raises(ConfigError, match=r"routing\.params\.latency\.tolerance_ms must be a number"):
        create_app(config, network, PluginHost(environ={}))
