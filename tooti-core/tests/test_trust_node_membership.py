"""A node in ``node.admission.mode: membership`` serves only gateways presenting a valid certificate.

Real libp2p on loopback: the calling "gateway" is a P2PRuntime whose peer id the node reads from the
authenticated connection, so a certificate copied from another member is useless.
"""

from __future__ import annotations

from contextlib import aclosing

import msgspec
import pytest
import trio

from tooti.config.model import AdmissionSection, Config, HeartbeatSection, ListenSection, NodeSection
from tooti.node.agent import run_node
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import FakeBackend, eventually
from tooti.trust.membership import Authority, issue_certificate
from tooti.wire.infer import Done, ErrorFrame, InferRequest


@pytest.fixture
def anyio_backend():
    return "trio"


def _request(certificate=None):
    return InferRequest(
        request_id="m1",
        model="fake-model",
        body={"messages": [{"role": "user", "content": "hi"}]},
        certificate=certificate,
    )


async def _ask(client, peer, request):
    async with aclosing(client.request(peer, request)) as frames:
        return [f async for f in frames]


@pytest.mark.anyio
async def test_membership_node_serves_only_certified_gateways(tmp_path):
    authority = Authority.generate()
    config = Config(
        node=NodeSection(
            name="member-node",
            identity_key_file=str(tmp_path / "n.key"),
            admission=AdmissionSection(mode="membership", authorities=[authority.public_key]),
        ),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=0.3),
    )
    backend = FakeBackend()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, config, backend)
            gateway = P2PRuntime(generate_identity(), RuntimeSettings(heartbeat_interval=0.3))
            await nursery.start(gateway.run)
            await gateway.connect(node.addrs[0])
            mine = issue_certificate(authority, gateway.peer_id, "pool gateway")
            stolen = issue_certificate(authority, node.peer_id, "someone else")
            forged = issue_certificate(Authority.generate(), gateway.peer_id, "pool gateway")
            for certificate in (None, stolen, forged, "tooti-cert-1.garbage.x"):
                frames = await _ask(gateway, node.peer_id, _request(certificate))
                assert len(frames) == 1
                assert isinstance(frames[0], ErrorFrame)
                assert frames[0].code == "unauthorized"
            assert not [c for c in backend.calls if c.method in ("chat", "chat_stream")]
            frames = await _ask(gateway, node.peer_id, _request(mine))
            assert isinstance(frames[-1], Done)
            assert node.service.rejected == 4
            nursery.cancel_scope.cancel()


def test_requests_without_the_field_still_decode():
    # A gateway of an older version sends no certificate field: the request decodes with None.
    raw = msgspec.msgpack.encode({"t": "request", "request_id": "x", "model": "m", "body": {}})
    assert msgspec.msgpack.decode(raw, type=InferRequest).certificate is None


def test_gateway_presents_its_certificate_to_membership_nodes(tmp_path):
    import functools

    import httpx

    from tooti.config.model import GatewaySection, NetworkSection
    from tooti.gateway.app import create_app
    from tooti.gateway.p2p import p2p_network
    from tooti.gateway.server import ServerThread
    from tooti.p2p.bridge import TrioThread
    from tooti.p2p.identity import load_or_create_identity, peer_id_of

    authority = Authority.generate()
    node_config = Config(
        node=NodeSection(
            name="member-node",
            identity_key_file=str(tmp_path / "n.key"),
            admission=AdmissionSection(mode="membership", authorities=[authority.public_key]),
        ),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=0.3),
    )
    thread = TrioThread("member-node")
    node = thread.start(functools.partial(run_node, node_config, FakeBackend()))
    gateway_key = tmp_path / "gateway.key"
    cert_file = tmp_path / "gateway.cert"
    cert_file.write_text(issue_certificate(authority, peer_id_of(load_or_create_identity(gateway_key)), "pool gw"))
    servers = []
    try:
        for certificate_file in (str(cert_file), None):
            config = Config(
                listen=ListenSection(host="127.0.0.1", tcp_port=0),
                network=NetworkSection(bootstrap_peers=node.addrs),
                heartbeat=HeartbeatSection(interval_sec=0.3),
                gateway=GatewaySection(
                    listen="127.0.0.1:0", admission=AdmissionSection(certificate_file=certificate_file)
                ),
            )
            network, lifespan = p2p_network(config, identity_file=gateway_key)
            server = ServerThread(create_app(config, network, lifespan=[lifespan]), "127.0.0.1", 0)
            server.start()
            servers.append(server)
            eventually(
                lambda url=server.base_url: httpx.get(f"{url}/v1/network/nodes", timeout=5).json()["data"],
                timeout=30,
                interval=0.1,
            )
            body = {"model": "fake-model", "messages": [{"role": "user", "content": "hi"}]}
            response = httpx.post(f"{server.base_url}/v1/chat/completions", json=body, timeout=30)
            if certificate_file:
                assert response.status_code == 200, response.text
            else:
                assert response.status_code == 503, response.text
                assert "does not accept this gateway" in response.json()["error"]["message"]
            server.stop()
    finally:
        for server in servers:
            server.stop()
        thread.stop()
