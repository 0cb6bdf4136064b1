"""Known peers on disk and gateway presence records: bounded, validated, never trusted blindly."""

from __future__ import annotations

import msgspec
import pytest

from tooti.p2p.known_peers import MAX_ADDRS, MAX_PEERS, KnownPeer, load_known_peers, save_known_peers
from tooti.p2p.presence import (
    MAX_GATEWAYS,
    GatewayBook,
    GatewayPresence,
    PresenceError,
    decode_presence,
    encode_presence,
)


def test_known_peers_round_trip_and_caps(tmp_path):
    path = tmp_path / "sub" / "node.peers.json"
    peers = [KnownPeer(f"peer{i}", tuple(f"/ip4/10.0.0.{i}/tcp/{p}" for p in range(20))) for i in range(100)]
    save_known_peers(path, peers)
    loaded = load_known_peers(path)
    assert len(loaded) == MAX_PEERS
    assert loaded[0] == KnownPeer("peer0", tuple(f"/ip4/10.0.0.0/tcp/{p}" for p in range(MAX_ADDRS)))
    assert not path.with_name(path.name + ".tmp").exists()


@pytest.mark.parametrize("content", [b"", b"not json", b'{"v": 1, "peers": [{"id": 5}]}', b"[" * 10])
def test_a_broken_known_peers_file_is_an_empty_list(tmp_path, content):
    path = tmp_path / "p.json"
    path.write_bytes(content)
    assert load_known_peers(path) == []
    assert load_known_peers(tmp_path / "missing.json") == []


def test_presence_must_be_signed_by_the_gateway_it_names():
    record = GatewayPresence(peer_id="gw", addrs=("/ip4/203.0.113.1/tcp/4001/p2p/gw",))
    assert decode_presence(encode_presence(record), "gw") == record
    with pytest.raises(PresenceError, match="signer"):
        decode_presence(encode_presence(record), "someone-else")


@pytest.mark.parametrize(
    "data",
    [
        b"x" * 5000,
        b"{not json",
        msgspec.json.encode({"v": 2, "peer_id": "gw"}),
        msgspec.json.encode({"peer_id": "gw", "addrs": ["/ip4/1.1.1.1/tcp/1"] * 9}),
        msgspec.json.encode({"peer_id": "gw", "addrs": ["http://evil.example/"]}),
    ],
)
def test_presence_out_of_bounds_is_refused(data):
    with pytest.raises(PresenceError):
        decode_presence(data, "gw")


def test_gateway_book_is_bounded_and_forgets_silent_gateways():
    now = [0.0]
    book = GatewayBook(1.0, clock=lambda: now[0])
    for i in range(MAX_GATEWAYS + 5):
        now[0] = float(i)
        book.record(GatewayPresence(peer_id=f"gw{i}", addrs=(f"/ip4/203.0.113.{i}/tcp/1",)))
    gateways = book.gateways()
    assert len(gateways) <= MAX_GATEWAYS
    assert next(iter(gateways)) == f"gw{MAX_GATEWAYS + 4}"  # newest first
    now[0] = 1000.0
    assert book.gateways() == {}


def test_announce_addrs_replace_the_listen_addresses():
    from tooti.p2p.identity import generate_identity
    from tooti.p2p.runtime import P2PRuntime, RuntimeSettings

    runtime = P2PRuntime(generate_identity(), RuntimeSettings(announce_addrs=["/ip4/198.51.100.4/tcp/4001"]))
    assert runtime.listen_addrs() == [f"/ip4/198.51.100.4/tcp/4001/p2p/{runtime.peer_id}"]


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"network": {"gateways": ["/ip4/203.0.113.1/tcp/4001"]}}, "network.gateways"),
        ({"network": {"dial_scopes": ["everywhere"]}}, "network.dial_scopes"),
        ({"listen": {"announce_addrs": ["203.0.113.1:4001"]}}, "listen.announce_addrs"),
    ],
)
def test_mesh_config_errors_name_the_key(section, key):
    from tooti.config.model import Config

    with pytest.raises(msgspec.ValidationError, match=key.replace(".", r"\.")):
        msgspec.convert(section, Config)


class _FakeDialer:
    """A :class:`~tooti.p2p.dial_policy.PeerDialer` that records dials and "connects" the ones that work."""

    def __init__(self, scopes, reachable):
        from tooti.p2p.dial_policy import DialBackoff

        self.backoff = DialBackoff()
        self.scopes = scopes
        self.reachable = set(reachable)
        self.connected: list[str] = []
        self.dialled: list[str] = []

    def connected_peers(self):
        return list(self.connected)

    def peerstore_addrs(self):
        return {}

    async def dial(self, peer, addrs):
        from tooti.errors import BackendUnavailable

        self.dialled.append(peer)
        if not self.backoff.allow(peer):
            raise BackendUnavailable("backing off")
        if peer not in self.reachable or not self.scopes.filter(addrs):
            self.backoff.failed(peer)
            raise BackendUnavailable("unreachable")
        self.connected.append(peer)

    async def connect(self, addr):
        raise AssertionError("no bootstrap peers configured")


def test_peer_keeper_pins_gateways_fills_to_target_and_spares_what_backs_off():
    """The keeper decides whom to dial through the PeerDialer interface alone (no libp2p host)."""
    from tooti.network import NodeView
    from tooti.p2p.dial_policy import DialScopes
    from tooti.p2p.peer_keeper import PeerKeeper
    from tooti.p2p.registry import Registry
    from tooti.p2p.runtime_settings import RuntimeSettings

    nodes = [f"node{i}" for i in range(6)]
    views = [NodeView(peer_id=n, addrs=(f"/ip4/127.0.0.{i + 2}/tcp/4001",)) for i, n in enumerate(nodes)]
    views.append(NodeView(peer_id="rogue", addrs=("/ip4/10.0.0.5/tcp/22",)))  # outside the scopes
    views.append(NodeView(peer_id="me", addrs=("/ip4/127.0.0.1/tcp/1",)))

    class _Registry(Registry):
        def snapshot(self):
            return views

    book = GatewayBook(5.0)
    book.record(GatewayPresence(peer_id="gw", addrs=("/ip4/127.0.0.9/tcp/4001/p2p/gw",)))
    dialer = _FakeDialer(DialScopes.parse(["loopback"]), reachable=["gw", *nodes[1:]])
    keeper = PeerKeeper(dialer, "me", RuntimeSettings(target_peers=3), _Registry(5.0), book)

    import trio

    trio.run(keeper.round)
    assert dialer.dialled[0] == "gw"  # pinned first, whatever the count
    assert "gw" in dialer.connected
    assert "rogue" not in dialer.dialled  # no address in scope: not even tried
    assert "me" not in dialer.dialled
    assert len(dialer.dialled) == 3  # the gateway, then the two missing to reach the target
    first = list(dialer.dialled)

    dialer.connected.clear()
    trio.run(keeper.round)  # a second round at once, all connections lost meanwhile
    again = dialer.dialled[len(first) :]
    assert not set(again) & set(first)  # each peer just dialled waits out its backoff
    assert len(again) == 3  # others fill the target instead
    assert "rogue" not in again
