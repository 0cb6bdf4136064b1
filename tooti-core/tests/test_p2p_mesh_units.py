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
