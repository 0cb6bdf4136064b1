"""503 vs 404 when the registry does not know a model: a real node's DHT record decides (issue 11)."""

from __future__ import annotations

import asyncio
import functools

import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import Config, HeartbeatSection, ListenSection, NodeSection
from tooti.gateway import create_app
from tooti.gateway.model_lookup import ProviderLookup
from tooti.node.agent import run_node
from tooti.p2p.bridge import TrioThread
from tooti.p2p.p2p_network import P2PNetwork
from tooti.p2p.runtime import RuntimeSettings
from tooti.routing.table import RouteTable
from tooti.testing import FakeBackend, eventually_asyncio, make_plugin_host

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def quiet_node(tmp_path):
    """A node whose next heartbeat is a minute away, so a forgetful gateway does not hear it again soon."""
    config = Config(
        node=NodeSection(name="quiet", identity_key_file=str(tmp_path / "node.key")),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=60.0),
    )
    thread = TrioThread("quiet-node")
    started = thread.start(functools.partial(run_node, config, FakeBackend(models=("fake-model",))))
    yield started
    thread.stop()


@pytest.mark.anyio
async def test_a_model_known_only_to_the_dht_answers_503_not_404(quiet_node):
    settings = RuntimeSettings(bootstrap_peers=quiet_node.addrs, heartbeat_interval=1.0, bootstrap_interval=1.0)
    async with asyncio.timeout(60), P2PNetwork(settings) as net:
        # the node provides within ~5 s of a peer
        await eventually_asyncio(lambda: net.find_providers("fake-model"), timeout=60, interval=0.5)
        registry = net._require()[1].registry
        registry.table = RouteTable(registry.stale_after)  # a restarted gateway: no heartbeat, no memory
        async with AsyncTestClient(create_app(Config(), net, make_plugin_host())) as client:
            assert net.nodes() == []
            r = await client.post("/v1/chat/completions", json=CHAT)
            assert r.status_code == 503
            assert r.json()["error"]["code"] == "no_capacity"
            assert int(r.headers["retry-after"]) >= 1
            unknown = await client.post("/v1/chat/completions", json={**CHAT, "model": "gpt-17"})
            assert unknown.status_code == 404
            assert unknown.json()["error"]["code"] == "model_not_found"
            lookups = client.app.state.gateway.providers.lookups
            again = await client.post("/v1/chat/completions", json=CHAT)
            assert again.status_code == 503
            assert client.app.state.gateway.providers.lookups == lookups  # remembered, not looked up again


@pytest.mark.anyio
async def test_lookups_are_remembered_and_bounded():
    calls = []

    async def find(model):
        calls.append(model)
        return ["peer"] if model == "there" else []

    now = [0.0]
    lookup = ProviderLookup(find, clock=lambda: now[0])
    assert await lookup.provided("there")
    assert not await lookup.provided("nowhere")
    assert await lookup.provided("there")
    assert not await lookup.provided("nowhere")
    assert calls == ["there", "nowhere"]
    now[0] += 31  # a missing model is asked again after 30 s, a found one is kept for 10 min
    assert not await lookup.provided("nowhere")
    assert await lookup.provided("there")
    assert calls == ["there", "nowhere", "nowhere"]

    async def hang(model):
        await asyncio.sleep(3600)  # a DHT lookup that never answers: the timeout under test must end it

    slow = ProviderLookup(hang)
    assert not await slow.provided("x")  # gives up after LOOKUP_TIMEOUT_S


@pytest.mark.anyio
async def test_without_a_dht_the_answer_is_404():
    assert not await ProviderLookup.for_network(object()).provided("anything")
