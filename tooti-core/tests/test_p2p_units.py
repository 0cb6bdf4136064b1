"""Unit tests of the p2p building blocks that need no network: keys, frames, heartbeats, registry."""

from __future__ import annotations

import functools
import stat
import struct

import msgspec
import pytest

from tooti.backends.protocol import ModelInfo
from tooti.config.model import ModelPrice, ModelsSection
from tooti.errors import ConfigError
from tooti.network import AdvertisedModel
from tooti.node.announce import advertised_models
from tooti.p2p.bootstrap import expand_bootstrap, peer_id_of_addr
from tooti.p2p.dht import model_cid, model_key
from tooti.p2p.framing import (
    EndOfStream,
    FrameError,
    FrameReader,
    FrameTooLarge,
    decode_request,
    decode_response,
    encode_frame,
)
from tooti.p2p.heartbeat import MAX_HEARTBEAT_BYTES, Heartbeat, HeartbeatError, decode_heartbeat, encode_heartbeat
from tooti.p2p.identity import load_or_create_identity, peer_id_of, read_identity, to_go_format
from tooti.p2p.registry import Registry
from tooti.testing import eventually_trio
from tooti.wire.infer import ChunkFrame, Done, InferRequest

PEER = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
OTHER = "12D3KooWHg2xXuki3vWWDQPcDCB3RmyV5SnDZmxuCeQuy5GS7u1A"


@pytest.fixture
def anyio_backend():
    return "trio"


# -- identity -----------------------------------------------------------------------------------


def test_identity_is_created_private_and_stable(tmp_path):
    path = tmp_path / "home" / "identity.key"
    first = peer_id_of(load_or_create_identity(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert peer_id_of(load_or_create_identity(path)) == first
    assert first.startswith("12D3KooW")


def test_go_format_key_file_is_accepted(tmp_path):
    key = load_or_create_identity(tmp_path / "py.key")
    go = tmp_path / "go.key"
    go.write_bytes(to_go_format(key))
    assert len(go.read_bytes()) > len((tmp_path / "py.key").read_bytes())
    assert peer_id_of(read_identity(go)) == peer_id_of(key)


def test_garbage_key_file_is_a_config_error(tmp_path):
    bad = tmp_path / "bad.key"
    bad.write_bytes(b"not a key")
    with pytest.raises(ConfigError, match="not a libp2p private key"):
        read_identity(bad)


# -- frames -------------------------------------------------------------------------------------


class _ChunkedStream:
    """Delivers bytes in small pieces, then EOF the libp2p way (an exception)."""

    def __init__(self, data: bytes, piece: int = 3):
        self.data, self.piece = data, piece

    async def read(self, n=None):
        if not self.data:
            raise EOFError
        out, self.data = self.data[: self.piece], self.data[self.piece :]
        return out


@pytest.mark.anyio
async def test_frames_round_trip_through_partial_reads():
    req = InferRequest(request_id="r", model="m", body={"messages": []})
    data = encode_frame(req, limit=1 << 20) + encode_frame(ChunkFrame(data={"a": 1}), limit=1 << 20)
    data += encode_frame(Done(), limit=1 << 20)
    reader = FrameReader(_ChunkedStream(data), limit=1 << 20, eof_types=(EOFError,))
    assert decode_request(await reader.read_payload()) == req
    assert decode_response(await reader.read_payload()) == ChunkFrame(data={"a": 1})
    assert isinstance(decode_response(await reader.read_payload()), Done)
    with pytest.raises(EndOfStream):
        await reader.read_payload()


@pytest.mark.anyio
async def test_oversized_truncated_and_malformed_frames_are_rejected():
    too_big = FrameReader(_ChunkedStream(struct.pack(">I", 100) + b"x" * 100), limit=10, eof_types=(EOFError,))
    with pytest.raises(FrameTooLarge):
        await too_big.read_payload()
    truncated = FrameReader(_ChunkedStream(struct.pack(">I", 10) + b"abc"), limit=100, eof_types=(EOFError,))
    with pytest.raises(FrameError, match="inside a frame"):
        await truncated.read_payload()
    with pytest.raises(FrameError):
        decode_request(msgspec.msgpack.encode({"t": "chunk", "data": {}}))
    with pytest.raises(FrameError):
        decode_response(b"\xc1")
    with pytest.raises(FrameTooLarge):
        encode_frame(ChunkFrame(data={"x": "y" * 100}), limit=50)


# -- heartbeats ---------------------------------------------------------------------------------


def test_heartbeat_must_be_signed_by_the_node_it_names():
    data = encode_heartbeat(Heartbeat(node_id=PEER, name="n", models=(AdvertisedModel(name="m"),)))
    assert decode_heartbeat(data, PEER).models[0].name == "m"
    with pytest.raises(HeartbeatError, match="signer"):
        decode_heartbeat(data, OTHER)


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"x" * (MAX_HEARTBEAT_BYTES + 1),
        msgspec.json.encode({"v": 2, "node_id": PEER}),
        msgspec.json.encode({"v": 1, "node_id": PEER, "models": [{"name": str(i)} for i in range(300)]}),
    ],
)
def test_bad_heartbeats_are_rejected(payload):
    with pytest.raises(HeartbeatError):
        decode_heartbeat(payload, PEER)


def test_heartbeat_ignores_unknown_fields_for_forward_compatibility():
    data = msgspec.json.encode({"v": 1, "node_id": PEER, "future_field": [1, 2]})
    assert decode_heartbeat(data, PEER).node_id == PEER


# -- registry -----------------------------------------------------------------------------------


class _Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_registry_staleness_uses_receiver_clock_and_replaces_models():
    clock = _Clock()
    registry = Registry(interval_sec=5.0, clock=clock)
    # The sender's timestamp is far in the past: irrelevant to liveness.
    registry.update(Heartbeat(node_id=PEER, models=(AdvertisedModel(name="a"), AdvertisedModel(name="b"))))
    registry.update(Heartbeat(node_id=OTHER, models=(AdvertisedModel(name="a", aliases=("a:latest",)),)))
    assert registry.models() == {"a": sorted([PEER, OTHER]), "a:latest": [OTHER], "b": [PEER]}
    registry.update(Heartbeat(node_id=PEER, models=(AdvertisedModel(name="a"),)))
    assert registry.get(PEER).serves() == {"a"}
    clock.now += 14.9
    registry.update(Heartbeat(node_id=OTHER))
    assert {v.peer_id for v in registry.snapshot()} == {PEER, OTHER}
    clock.now += 0.2  # PEER now silent for 15.1 s > 3 x 5 s
    assert [v.peer_id for v in registry.snapshot()] == [OTHER]
    assert registry.prune() == [PEER]
    assert registry.snapshot()[0].age_s == pytest.approx(0.2)


# -- bootstrap / dnsaddr ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_dnsaddr_expansion_with_a_fake_resolver():
    records = {
        "_dnsaddr.boot.example": [
            f"dnsaddr=/ip4/10.0.0.1/tcp/4001/p2p/{PEER}",
            "dnsaddr=/dnsaddr/nested.example",
            "dnsaddr=/ip4/10.0.0.9/tcp/4001",  # no /p2p: skipped
            "unrelated=txt",
        ],
        "_dnsaddr.nested.example": [f"dnsaddr=/ip4/10.0.0.2/tcp/4001/p2p/{OTHER}"],
        "_dnsaddr.loop.example": ["dnsaddr=/dnsaddr/loop.example"],
    }
    asked = []

    async def resolver(name):
        asked.append(name)
        return records.get(name, [])

    direct = f"/ip4/127.0.0.1/tcp/1/p2p/{PEER}"
    out = await expand_bootstrap(["/dnsaddr/boot.example", direct], resolver)
    assert out == [f"/ip4/10.0.0.1/tcp/4001/p2p/{PEER}", f"/ip4/10.0.0.2/tcp/4001/p2p/{OTHER}", direct]
    only = await expand_bootstrap([f"/dnsaddr/boot.example/p2p/{OTHER}"], resolver)
    assert only == [f"/ip4/10.0.0.2/tcp/4001/p2p/{OTHER}"]
    assert await expand_bootstrap(["/dnsaddr/loop.example"], resolver) == []
    assert "_dnsaddr.boot.example" in asked
    assert peer_id_of_addr(direct) == PEER


def test_model_cid_is_cidv1_raw_sha256_of_the_model_key():
    import cid

    parsed = cid.from_string(model_cid("smollm2"))
    assert parsed.version == 1
    assert parsed.codec == "raw"
    assert parsed.multihash == model_key("smollm2")


# -- advertised models --------------------------------------------------------------------------


def test_advertised_models_filter_price_and_skip_unserved(caplog):
    served = [ModelInfo(id="llama3.2:latest", aliases=("llama3.2",), context_length=4096), ModelInfo(id="other")]
    section = ModelsSection(
        advertised=["llama3.2", "missing"], pricing={"llama3.2": ModelPrice(input_per_1k=0.1, output_per_1k=0.2)}
    )
    models = advertised_models(served, section, "ollama")
    assert [m.name for m in models] == ["llama3.2:latest"]
    assert models[0].price_out_per_1k == 0.2
    assert models[0].backend == "ollama"
    assert "missing" in caplog.text
    assert [m.name for m in advertised_models(served, ModelsSection(), "x")] == ["llama3.2:latest", "other"]


def test_unspecified_listen_address_becomes_interface_addresses():
    from tooti.p2p.addrs import dialable_addrs

    out = dialable_addrs([f"/ip4/0.0.0.0/tcp/4001/p2p/{PEER}", f"/ip4/10.1.2.3/tcp/4001/p2p/{PEER}", "/ip6/::/tcp/1"])
    assert f"/ip4/127.0.0.1/tcp/4001/p2p/{PEER}" in out
    assert f"/ip4/10.1.2.3/tcp/4001/p2p/{PEER}" in out
    assert not any("0.0.0.0" in a or "/ip6/::/" in a for a in out)


def test_a_node_learns_at_once_when_its_own_heartbeat_breaks_a_bound():
    from tooti.p2p.heartbeat import HeartbeatError, encode_heartbeat

    bad = Heartbeat(node_id=PEER, models=(AdvertisedModel(name="my model"),))  # a space is not allowed
    with pytest.raises(HeartbeatError, match=r"models\[0\]\.name"):
        encode_heartbeat(bad)
    fine = Heartbeat(node_id=PEER, models=(AdvertisedModel(name="HuggingFaceTB/SmolLM2-135M-Instruct"),))
    assert encode_heartbeat(fine)


def test_rate_limit_allows_a_burst_then_the_steady_rate():
    from tooti.p2p.heartbeat_rate import HeartbeatRateLimit

    clock = _Clock()
    limit = HeartbeatRateLimit(interval_sec=5.0, burst=3, clock=clock)
    assert [limit.allow(b"p") for _ in range(4)] == [True, True, True, False]
    assert limit.allow(b"q")  # buckets are per peer
    clock.now += 1.0  # the steady rate is max(2 / 5 s, 1/s) = 1/s
    assert limit.allow(b"p")
    assert not limit.allow(b"p")


def test_a_burst_of_refusals_marks_a_flooder_once():
    from tooti.p2p.heartbeat_rate import FLOOD_SCORE, HeartbeatRateLimit

    clock = _Clock()
    limit = HeartbeatRateLimit(interval_sec=5.0, burst=2, clock=clock)
    assert limit.allow(b"p")
    assert limit.allow(b"p")
    flagged = []
    for _ in range(int(FLOOD_SCORE) + 10):  # a flood: refusals 1 ms apart
        clock.now += 0.001
        assert not limit.allow(b"p")
        flagged.append(limit.flooding(b"p"))
    assert flagged.count(True) == 1
    assert flagged.index(True) >= FLOOD_SCORE - 2  # not before about FLOOD_SCORE refusals
    assert not limit.flooding(b"never-seen")


def test_a_node_sending_twice_the_allowed_rate_is_rate_limited_but_never_flagged():
    """An operator who set a shorter heartbeat interval than this gateway's is not a flooder."""
    from tooti.p2p.heartbeat_rate import HeartbeatRateLimit

    clock = _Clock()
    limit = HeartbeatRateLimit(interval_sec=5.0, clock=clock)  # allows 1/s
    refused = 0
    for _ in range(600):  # 2/s for five minutes
        clock.now += 0.5
        refused += not limit.allow(b"p")
        assert not limit.flooding(b"p")
    assert refused > 250


def test_a_flooder_that_stops_and_comes_back_is_reported_again():
    from tooti.p2p.heartbeat_rate import FLOOD_SCORE, HeartbeatRateLimit

    clock = _Clock()
    limit = HeartbeatRateLimit(interval_sec=5.0, burst=1, clock=clock)
    reports = 0
    for _ in range(2):
        for _ in range(int(FLOOD_SCORE) * 2):
            clock.now += 0.001
            limit.allow(b"p")
            reports += limit.flooding(b"p")
        clock.now += 60.0  # quiet for a minute: the score decays away
    assert reports == 2


def test_bans_expire_and_are_counted_once_per_ban():
    from tooti.p2p.peer_bans import PeerBans

    clock = _Clock()
    bans = PeerBans(ban_sec=10.0, clock=clock)
    assert bans.ban(b"p")
    assert not bans.ban(b"p")  # extended, not a new ban
    assert bans.banned(b"p")
    assert not bans.banned(b"q")
    clock.now += 9.0
    assert bans.expire() == []
    clock.now += 2.0
    assert not bans.banned(b"p")
    assert bans.expire() == [b"p"]
    assert len(bans) == 0
    assert bans.total == 1


def _tcp_pair():
    import socket as stdsocket

    listener = stdsocket.create_server(("127.0.0.1", 0))
    ours = stdsocket.create_connection(listener.getsockname())
    theirs, _ = listener.accept()
    listener.close()
    return ours, theirs


@pytest.mark.anyio
async def test_tcp_reads_take_what_arrived_together_from_one_socket_read():
    """py-libp2p bug 11 (docs/p2p.md): a length prefix and the message behind it cost one socket read."""
    import socket as stdsocket

    import trio
    from libp2p.io.exceptions import ConnectionClosedError
    from libp2p.io.trio import TrioTCPStream

    from tooti.p2p._libp2p import prepare_libp2p

    prepare_libp2p()
    ours, theirs = _tcp_pair()
    stream = TrioTCPStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
    socket_reads = 0
    receive_some = stream.stream.receive_some

    async def counting(max_bytes=None):
        nonlocal socket_reads
        socket_reads += 1
        return await receive_some(max_bytes)

    stream.stream.receive_some = counting  # type: ignore[method-assign]
    try:
        theirs.sendall(b"\x00\x04abcd\x00\x02ef")
        # All ten bytes in our kernel buffer before the first read (the test counts socket reads).
        peek = functools.partial(ours.recv, 16, stdsocket.MSG_PEEK | stdsocket.MSG_DONTWAIT)
        await eventually_trio(lambda: len(peek()) == 10, timeout=10, interval=0.01, ignoring=(BlockingIOError,))
        assert await stream.read(2) == b"\x00\x04"
        assert await stream.read(4) == b"abcd"
        assert await stream.read(2) == b"\x00\x02"
        assert await stream.read(None) == b"ef"
        assert socket_reads == 1
        theirs.sendall(b"gh")
        theirs.close()
        assert await stream.read(1) == b"g"
        assert await stream.read(5) == b"h"  # what is in hand first, then the end
        assert await stream.read(5) == b""
        assert socket_reads == 3
    finally:
        theirs.close()
        await stream.close()

    ours, theirs = _tcp_pair()
    reset = TrioTCPStream(trio.SocketStream(trio.socket.from_stdlib_socket(ours)))
    try:
        theirs.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_LINGER, struct.pack("ii", 1, 0))
        theirs.close()  # an RST, not a FIN
        await trio.sleep(0.05)  # for the RST to land; polling for it (a peek) would consume the error it carries
        with pytest.raises(ConnectionClosedError):
            await reset.read(2)
    finally:
        await reset.close()
