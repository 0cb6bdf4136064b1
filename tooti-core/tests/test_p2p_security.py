"""Security rules on real loopback hosts: spoofed heartbeats, bad frames, overload."""

from __future__ import annotations

import struct
from contextlib import aclosing

import pytest
import trio

from tooti.config.model import Config, HeartbeatSection, ListenSection, NodeSection
from tooti.node.agent import run_node
from tooti.p2p.heartbeat import HEARTBEAT_TOPIC, Heartbeat, encode_heartbeat
from tooti.p2p.identity import generate_identity, peer_id_of
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.p2p.safestream import open_stream, reset_stream
from tooti.testing import FakeBackend, eventually_trio
from tooti.wire.infer import PROTOCOL_ID, ChunkFrame, Done, ErrorFrame, InferRequest

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "trio"


def _runtime(bootstrap=()):
    return P2PRuntime(
        generate_identity(), RuntimeSettings(bootstrap_peers=list(bootstrap), heartbeat_interval=INTERVAL)
    )


def _config(tmp_path, **node):
    return Config(
        node=NodeSection(name="sec", identity_key_file=str(tmp_path / "sec.key"), **node),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
    )


def _req():
    return InferRequest(
        request_id="s1", model="fake-model", stream=True, body={"messages": [{"role": "user", "content": "x"}]}
    )


async def _read_until_error(stream):
    while True:
        await stream.read(1024)


async def _collect(runtime, peer):
    async with aclosing(runtime.request(peer, _req())) as frames:
        return [f async for f in frames]


@pytest.mark.anyio
async def test_spoofed_heartbeat_is_dropped_and_genuine_one_accepted():
    gateway = _runtime()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            attacker = _runtime(gateway.listen_addrs())
            await nursery.start(attacker.run)
            await attacker.bootstrap_once()
            # A real attacker does not run our validator; remove it so the spoof leaves this host.
            attacker.pubsub.remove_topic_validator(HEARTBEAT_TOPIC)
            victim = peer_id_of(generate_identity())

            async def honest_one_arrived() -> bool:
                await attacker.publish(encode_heartbeat(Heartbeat(node_id=victim, name="spoof")))
                await attacker.publish(encode_heartbeat(Heartbeat(node_id=attacker.peer_id, name="honest")))
                await attacker.publish(b"\xff not json")
                return gateway.registry.get(attacker.peer_id) is not None

            await eventually_trio(honest_one_arrived, timeout=30, interval=0.1)
            assert gateway.registry.dropped >= 2
            assert gateway.registry.get(victim) is None
            assert [v.peer_id for v in gateway.registry.snapshot()] == [attacker.peer_id]
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_malformed_and_oversized_frames_reset_only_that_stream(tmp_path):
    from libp2p.network.stream.exceptions import StreamError
    from libp2p.peer.id import ID

    client = _runtime()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, _config(tmp_path), FakeBackend())
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            peer = ID.from_base58(node.peer_id)
            bad_frames = [
                struct.pack(">I", 5) + b"hello",  # not msgpack of a request
                struct.pack(">I", 5 * 1024 * 1024),  # announces more than the 4 MiB cap
                struct.pack(">I", 10) + b"abc",  # truncated, then half-closed
            ]
            for expected, raw in enumerate(bad_frames, start=1):
                stream = await open_stream(client.host, peer, PROTOCOL_ID)
                await stream.write(raw)
                await stream.close_write()
                with pytest.raises(StreamError):
                    await _read_until_error(stream)
                await reset_stream(stream)
                assert node.service.malformed == expected
            frames = await _collect(client, node.peer_id)
            assert isinstance(frames[-1], Done)
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_requests_beyond_max_concurrent_get_overloaded(tmp_path):
    client = _runtime()
    backend = FakeBackend(chunks=50, chunk_delay_sec=0.05)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, _config(tmp_path, max_concurrent_requests=1), backend)
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            async with aclosing(client.request(node.peer_id, _req())) as first:
                assert isinstance(await anext(first), ChunkFrame)
                frames = await _collect(client, node.peer_id)
                assert len(frames) == 1
                assert isinstance(frames[0], ErrorFrame)
                assert frames[0].code == "overloaded"
            nursery.cancel_scope.cancel()
