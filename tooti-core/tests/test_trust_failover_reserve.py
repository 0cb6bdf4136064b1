"""A node the trust filter holds back (on probation beyond its share) still takes a request that
every preferred node failed: held back means tried last, not removed from failover (#11). A
quarantined node is never tried, not even then."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import Config, GatewaySection, VerificationSection
from tooti.errors import BackendOverloaded, BackendUnavailable
from tooti.gateway import create_app
from tooti.network import AdvertisedModel
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, make_plugin_host

pytestmark = pytest.mark.anyio

CHAT = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _setup():
    backends = {"trusted": FakeBackend(), "newcomer": FakeBackend()}
    net = LocalNetwork()
    for peer, backend in backends.items():
        net.add_node(peer, backend, [AdvertisedModel(name="fake-model", backend="fake")])
    # No canary while the test runs (FakeBackend's fixed text would be quarantined); no probation share.
    section = VerificationSection(probation_share=0.0, probation_interval_sec=3600, interval_sec=3600)
    app = create_app(Config(gateway=GatewaySection(verification=section)), net, make_plugin_host())
    trust = app.state.gateway.trust_filter.__self__
    for _ in range(section.probation_checks):
        trust.standings.passed("trusted")
    assert trust.standings.state("trusted") == "trusted"
    assert trust.standings.state("newcomer") == "probation"
    return app, backends, trust


async def test_a_held_back_node_takes_the_request_every_trusted_node_failed():
    app, backends, _ = _setup()
    async with AsyncTestClient(app) as client:
        first = await client.post("/v1/chat/completions", json=CHAT)
        assert first.headers["x-tooti-node"] == "trusted"  # normal traffic stays off the newcomer
        assert not backends["newcomer"].calls
        backends["trusted"].fail_with(BackendUnavailable("connection refused"))
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
        assert r.headers["x-tooti-node"] == "newcomer"


async def test_a_quarantined_node_is_never_the_fallback():
    app, backends, trust = _setup()
    trust.standings.failed("newcomer", "test: a failed canary")
    async with AsyncTestClient(app) as client:
        backends["trusted"].fail_with(BackendUnavailable("connection refused"))
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 503
        assert not backends["newcomer"].calls


async def test_a_busy_node_loses_no_reputation():
    """``overloaded`` is not the node's fault: the request moves on and the node's standing is kept."""
    app, backends, trust = _setup()
    before = {peer: trust.reputation(peer) for peer in backends}
    async with AsyncTestClient(app) as client:
        for backend in backends.values():
            backend.fail_with(BackendOverloaded("busy"))
        r = await client.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 429
    assert all(trust.reputation(peer) >= before[peer] for peer in backends), before
