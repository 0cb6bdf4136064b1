"""The per-source identity rate counts the source address observed on real libp2p connections.

Two real node agents (each its own libp2p host and key) on one address, and a gateway's real
:class:`P2PNetwork`: the network declares ``remote_host`` (the socket's peer address, not an
announced one), and :class:`GatewayTrust` takes it from the declared capabilities. With one new
identity admitted per source, the second key from the same address is held.
"""

from __future__ import annotations

import asyncio
import functools

import pytest

from tooti.config.model import (
    AdmissionSection,
    Config,
    GatewaySection,
    HeartbeatSection,
    ListenSection,
    NodeSection,
    VerificationSection,
)
from tooti.gateway.app import create_app  # noqa: F401 - imports tooti.gateway before trust (prober -> gateway.body)
from tooti.network_capabilities import NetworkCapabilities, capabilities_of
from tooti.node.agent import run_node
from tooti.p2p.bridge import TrioThread
from tooti.p2p.p2p_network import P2PNetwork
from tooti.p2p.runtime import RuntimeSettings
from tooti.testing import FakeBackend
from tooti.trust.admission import Admission
from tooti.trust.admitted_network import AdmittedNetwork
from tooti.trust.gateway_trust import GatewayTrust

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def nodes(tmp_path):
    threads, started = [], []
    for i in range(2):
        config = Config(
            node=NodeSection(name=f"node-{i}", identity_key_file=str(tmp_path / f"node-{i}.key")),
            listen=ListenSection(host="127.0.0.1", tcp_port=0),
            heartbeat=HeartbeatSection(interval_sec=INTERVAL),
        )
        thread = TrioThread(f"test-node-{i}")
        started.append(thread.start(functools.partial(run_node, config, FakeBackend(models=("m",)))))
        threads.append(thread)
    yield started
    for thread in threads:
        thread.stop()


@pytest.mark.anyio
async def test_remote_host_is_the_observed_source_and_caps_new_identities(nodes):
    addrs = [a for s in nodes for a in s.addrs]
    settings = RuntimeSettings(bootstrap_peers=addrs, heartbeat_interval=INTERVAL, bootstrap_interval=1.0)
    async with asyncio.timeout(30), P2PNetwork(settings) as net:
        peers = {s.peer_id for s in nodes}
        while {n.peer_id for n in net.nodes()} != peers:
            await asyncio.sleep(0.05)
        remote_host = capabilities_of(net).remote_host
        assert remote_host is not None
        assert {remote_host(p) for p in peers} == {"127.0.0.1"}
        assert remote_host("not-a-peer-id") is None
        assert remote_host(net.peer_id) is None  # no connection to itself

        config = Config(gateway=GatewaySection(verification=VerificationSection(new_identities_per_source=1)))
        trust = GatewayTrust(config, net)
        first, second = sorted(peers)
        assert not trust.standings.held(first)
        assert trust.standings.held(second)
        assert "too many new identities from 127.0.0.1" in trust.standings.get(second).reason
        assert trust.describe(first)["source"] == "127.0.0.1"


def test_wrappers_pass_remote_host_on():
    class Net:
        peer_id = "gw"

        @property
        def capabilities(self):
            return NetworkCapabilities(remote_host=lambda peer: "10.0.0.7")

        def nodes(self):
            return []

        def infer(self, peer_id, request):
            raise AssertionError

    admitted = AdmittedNetwork(Net(), Admission(AdmissionSection()))
    remote_host = capabilities_of(admitted).remote_host
    assert remote_host is not None
    assert remote_host("x") == "10.0.0.7"
