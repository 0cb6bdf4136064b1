"""Which side opened a connection, observed on real libp2p hosts and shown by the explorer.

A gateway's real :class:`P2PNetwork` dials one real node agent (the node listens; the gateway has
its address) while a second real node agent, the way a node behind NAT does, dials the gateway
itself. The network's ``connection_direction`` extra must say ``outbound`` for the first and
``inbound`` for the second — read from the swarm, not from anything the nodes announce (both announce
dialable loopback addresses) — the admission wrapper must pass it on, and the explorer summary
must show "direct" and "via the node's outbound connection" as observed, beside the claimed
addresses.
"""

from __future__ import annotations

import asyncio
import functools

import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import (
    AdmissionSection,
    Config,
    GatewaySection,
    HeartbeatSection,
    ListenSection,
    NetworkSection,
    NodeSection,
    VerificationSection,
)
from tooti.gateway.app import create_app
from tooti.network_capabilities import capabilities_of
from tooti.node.agent import run_node
from tooti.p2p.bridge import TrioThread
from tooti.p2p.p2p_network import P2PNetwork
from tooti.p2p.runtime import RuntimeSettings
from tooti.testing import FakeBackend, make_plugin_host
from tooti.trust.admission import Admission
from tooti.trust.admitted_network import AdmittedNetwork

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _start_node(tmp_path, name: str, bootstrap: list[str], threads: list[TrioThread]):
    config = Config(
        node=NodeSection(name=name, identity_key_file=str(tmp_path / f"{name}.key")),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
        network=NetworkSection(bootstrap_peers=bootstrap),
    )
    thread = TrioThread(f"test-{name}")
    threads.append(thread)
    return thread.start(functools.partial(run_node, config, FakeBackend(models=("m",))))


@pytest.mark.anyio
async def test_gateway_tells_a_node_it_dialled_from_a_node_that_dialled_it(tmp_path):
    threads: list[TrioThread] = []
    try:
        dialled = _start_node(tmp_path, "dialled-by-gateway", [], threads)
        settings = RuntimeSettings(bootstrap_peers=dialled.addrs, heartbeat_interval=INTERVAL, bootstrap_interval=1.0)
        async with asyncio.timeout(30), P2PNetwork(settings) as net:
            dialler = _start_node(tmp_path, "behind-nat", net.listen_addrs(), threads)
            peers = {dialled.peer_id, dialler.peer_id}
            while {n.peer_id for n in net.nodes()} != peers:
                await asyncio.sleep(0.05)

            direction = capabilities_of(net).connection_direction
            assert direction is not None
            assert direction(dialled.peer_id) == "outbound"
            assert direction(dialler.peer_id) == "inbound"
            assert direction("not-a-peer-id") is None
            assert direction(net.peer_id) is None  # no connection to itself

            admitted = AdmittedNetwork(net, Admission(AdmissionSection()))
            passed_on = capabilities_of(admitted).connection_direction
            assert passed_on is not None
            assert passed_on(dialler.peer_id) == "inbound"

            config = Config(gateway=GatewaySection(verification=VerificationSection(enabled=False)))
            async with AsyncTestClient(create_app(config, net, make_plugin_host())) as client:
                body = (await client.get("/explorer/summary")).json()
            rows = {r["peer_id"]: r["reachability"] for r in body["nodes"]}
            assert rows[dialled.peer_id]["direction_known"] is True
            assert rows[dialled.peer_id]["connection"] == "direct"
            assert rows[dialled.peer_id]["connection_opened_by"] == "gateway"
            assert rows[dialler.peer_id]["connection"] == "via the node's outbound connection"
            assert rows[dialler.peer_id]["connection_opened_by"] == "node"
            assert all(r["claimed_addrs"] >= 1 and r["claimed_scopes"] == ["loopback"] for r in rows.values())
    finally:
        for thread in threads:
            thread.stop()
