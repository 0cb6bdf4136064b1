"""The gateway's default strategy with tooti-router-strategies installed (cross-package)."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import Config
from tooti.gateway import create_app
from tooti.network import AdvertisedModel
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture
def network():
    net = LocalNetwork()
    net.add_node("peerA", FakeBackend(chunks=4), [AdvertisedModel(name="fake-model", backend="fake")])
    return net


async def test_default_strategy_is_balanced_when_installed(network):
    from tooti.plugins.host import PluginHost

    app = create_app(Config(), network, PluginHost(environ={}))
    async with AsyncTestClient(app) as c:
        r = await c.post("/v1/chat/completions", json=CHAT, headers={"x-tooti-debug": "1"})
        assert r.status_code == 200
        assert "strategy=balanced" in r.headers["x-tooti-route"]
        r = await c.post(
            "/v1/chat/completions", json={**CHAT, "tooti": {"strategy": "latency"}}, headers={"x-tooti-debug": "1"}
        )
        assert "strategy=latency" in r.headers["x-tooti-route"]
