"""A rogue peer's heartbeat cannot make a gateway dial outside its dial scopes, nor dial in a loop.

Real loopback hosts: a gateway, an honest relay it is connected to, and a rogue connected only to
the relay. The rogue's heartbeat (signed by itself, so it passes validation) lists a trap listener's
address as its own. The trap counts the TCP connections it accepts.
"""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio

from tooti.errors import BackendUnavailable
from tooti.network import AdvertisedModel
from tooti.p2p.dial_policy import DialBackoff, DialScopes, default_scopes, ip_scope
from tooti.p2p.heartbeat import Heartbeat, encode_heartbeat
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import always_trio, eventually_trio
from tooti.wire.infer import InferRequest

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "trio"


class Trap:
    """A TCP listener that accepts and at once closes connections, counting them."""

    def __init__(self) -> None:
        self.accepted = 0
        self.port = 0

    async def serve(self, host: str, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()

        async def handle(stream: trio.SocketStream) -> None:
            self.accepted += 1
            await stream.aclose()

        await trio.serve_listeners(handle, listeners)


def _runtime(bootstrap=(), scopes=()):
    settings = RuntimeSettings(bootstrap_peers=list(bootstrap), heartbeat_interval=INTERVAL, dial_scopes=list(scopes))
    return P2PRuntime(generate_identity(), settings)


async def _rogue_network(nursery, gateway_scopes, trap_addr_host):
    """Start gateway, relay, rogue and a trap; the rogue announces the trap's address until the gateway hears it."""
    relay = _runtime()
    await nursery.start(relay.run)
    gateway = _runtime(relay.listen_addrs(), gateway_scopes)
    await nursery.start(gateway.run)
    await gateway.bootstrap_once()
    rogue = _runtime(relay.listen_addrs())
    await nursery.start(rogue.run)
    await rogue.bootstrap_once()
    trap = Trap()
    await nursery.start(trap.serve, trap_addr_host)
    lie = f"/ip4/{trap_addr_host}/tcp/{trap.port}/p2p/{rogue.peer_id}"
    beat = Heartbeat(node_id=rogue.peer_id, name="rogue", models=(AdvertisedModel(name="m"),), addrs=(lie,))

    async def announced():
        await rogue.publish(encode_heartbeat(beat))
        return gateway.registry.get(rogue.peer_id) is not None

    await eventually_trio(announced, timeout=20, interval=0.1)
    assert rogue.peer_id not in gateway.connected_peers()
    return gateway, rogue, trap


async def _ask(gateway: P2PRuntime, peer: str) -> None:
    request = InferRequest(request_id="r", model="m", body={"messages": []})
    async with aclosing(gateway.request(peer, request)) as frames:
        async for _ in frames:
            pass


@pytest.mark.anyio
async def test_an_announced_address_outside_the_dial_scopes_is_never_dialled():
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            # The gateway dials 127.0.0.1 only; the rogue claims to live at 127.0.0.2 (where the trap is).
            gateway, rogue, trap = await _rogue_network(nursery, ["127.0.0.1/32"], "127.0.0.2")
            for _ in range(3):
                with pytest.raises(BackendUnavailable, match="outside the dial scopes"):
                    await _ask(gateway, rogue.peer_id)
            await always_trio(lambda: trap.accepted == 0, duration=0.2)  # and no dial a moment later either
            assert trap.accepted == 0
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_dials_to_one_peer_are_rate_limited():
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            # In scope this time, but the "peer" there only hangs up: ten requests, one dial.
            gateway, rogue, trap = await _rogue_network(nursery, [], "127.0.0.1")
            for _ in range(10):
                with pytest.raises(BackendUnavailable):
                    await _ask(gateway, rogue.peer_id)
            await always_trio(lambda: trap.accepted <= 1, duration=0.2)  # no second dial a moment later either
            assert trap.accepted == 1
            assert gateway.backoff.refused == 9
            nursery.cancel_scope.cancel()


def test_default_scopes_follow_the_listen_address():
    assert default_scopes("127.0.0.1", []) == ["public", "loopback"]
    assert default_scopes("192.168.1.7", []) == ["public", "private"]
    # A public gateway bound to every interface: loopback is not added, so it never dials it.
    assert default_scopes("0.0.0.0", ["127.0.0.1", "203.0.113.9"]) == ["public"]
    assert default_scopes("0.0.0.0", ["127.0.0.1", "10.0.0.4"]) == ["public", "private"]


def test_scopes_classify_and_filter():
    public = DialScopes.parse(["public"])
    assert public.allows("/ip4/203.0.113.9/tcp/4001/p2p/x")
    for private in ("10.1.1.1", "172.16.0.1", "192.168.0.1", "100.64.0.1", "127.0.0.1", "169.254.0.1", "0.0.0.0"):
        assert not public.allows(f"/ip4/{private}/tcp/4001"), private
    assert not public.allows("/ip6/::1/tcp/4001")
    assert not public.allows("/ip6/::ffff:127.0.0.1/tcp/4001")
    assert not public.allows("/dns4/localhost/tcp/4001")  # a peer's DNS name could resolve anywhere
    public.trust(["/ip4/10.0.0.5/tcp/4001/p2p/boot"])
    assert public.allows("/ip4/10.0.0.5/tcp/4001/p2p/boot")  # the operator wrote it
    assert ip_scope(__import__("ipaddress").ip_address("fd00::1")) == "private"


def test_backoff_doubles_after_failures_and_resets_on_success():
    now = [0.0]
    backoff = DialBackoff(clock=lambda: now[0])
    assert backoff.allow("p")
    assert not backoff.allow("p")
    backoff.failed("p")
    now[0] = 1.5
    assert not backoff.allow("p")  # 2 s after the first failure
    now[0] = 2.1
    assert backoff.allow("p")
    backoff.failed("p")
    now[0] = 5.0
    assert not backoff.allow("p")  # 4 s now
    now[0] = 6.2
    assert backoff.allow("p")
    backoff.succeeded("p")
    now[0] = 7.3
    assert backoff.allow("p")


@pytest.mark.anyio
async def test_a_gateway_serves_a_node_it_may_not_dial_over_the_connection_the_node_opened(tmp_path):
    """What a node behind NAT relies on: libp2p streams run both ways on one connection.

    The gateway may dial nothing on 127.0.0.1 (its scopes say 127.0.0.2 only), so the node's
    announced address is useless to it; the node has the gateway in ``network.gateways`` and
    connects out. The gateway then opens the inference stream over that inbound connection.
    """
    from tooti.config.model import Config, HeartbeatSection, ListenSection, NetworkSection, NodeSection
    from tooti.node.agent import run_node
    from tooti.testing import FakeBackend
    from tooti.wire.infer import Done

    gateway = _runtime(scopes=["127.0.0.2/32"])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            config = Config(
                node=NodeSection(name="natted", identity_key_file=str(tmp_path / "n.key")),
                listen=ListenSection(host="127.0.0.1", tcp_port=0),
                network=NetworkSection(gateways=gateway.listen_addrs()[:1]),
                heartbeat=HeartbeatSection(interval_sec=INTERVAL),
            )
            node = await nursery.start(run_node, config, FakeBackend())
            await eventually_trio(lambda: gateway.registry.get(node.peer_id) is not None, timeout=20)
            request = InferRequest(request_id="r", model="fake-model", body={"messages": []})
            async with aclosing(gateway.request(node.peer_id, request)) as frames:
                received = [frame async for frame in frames]
            assert isinstance(received[-1], Done)
            assert gateway.dials_refused == 0  # it never even tried to dial the node
            nursery.cancel_scope.cancel()
