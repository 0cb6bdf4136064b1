"""Streams kept for the next request, on real loopback hosts; and the pool's own rules."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio

from tooti.config.model import Config, HeartbeatSection, ListenSection, NodeSection
from tooti.node.agent import run_node
from tooti.p2p import infer_server
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.p2p.stream_pool import StreamPool
from tooti.testing import FakeBackend, eventually_trio
from tooti.wire.infer import ChunkFrame, Done, InferRequest

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "trio"


def _config(tmp_path):
    return Config(
        node=NodeSection(name="reuse", identity_key_file=str(tmp_path / "reuse.key")),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
    )


def _req(i: int, *, stream: bool = True) -> InferRequest:
    return InferRequest(
        request_id=f"r{i}", model="fake-model", stream=stream, body={"messages": [{"role": "user", "content": "x"}]}
    )


async def _collect(client, peer, request):
    async with aclosing(client.request(peer, request)) as frames:
        return [f async for f in frames]


@pytest.mark.anyio
async def test_sequential_requests_share_one_stream(tmp_path):
    client = P2PRuntime(generate_identity(), RuntimeSettings(heartbeat_interval=INTERVAL))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, _config(tmp_path), FakeBackend())
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            for i in range(5):
                frames = await _collect(client, node.peer_id, _req(i, stream=i % 2 == 0))
                assert isinstance(frames[-1], Done)
            assert client.streams.reused == 4
            assert client.streams.idle(node.peer_id) == 1
            assert node.service.served == 5
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_stream_the_node_closed_while_idle_is_replaced_transparently(tmp_path, monkeypatch):
    monkeypatch.setattr(infer_server, "IDLE_STREAM_TIMEOUT", 0.2)
    client = P2PRuntime(generate_identity(), RuntimeSettings(heartbeat_interval=INTERVAL))
    backend = FakeBackend()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, _config(tmp_path), backend)
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            assert isinstance((await _collect(client, node.peer_id, _req(1)))[-1], Done)
            await trio.sleep(0.6)  # the node closes the kept stream
            frames = await _collect(client, node.peer_id, _req(2))
            assert isinstance(frames[-1], Done)
            assert sum(isinstance(f, ChunkFrame) for f in frames) == 5
            assert node.service.served == 2  # nothing ran twice
            assert len(backend.streams) == 2
            nursery.cancel_scope.cancel()


@pytest.mark.anyio
async def test_a_cancelled_answer_is_not_kept_and_the_next_request_works(tmp_path):
    client = P2PRuntime(generate_identity(), RuntimeSettings(heartbeat_interval=INTERVAL))
    backend = FakeBackend(chunks=40, chunk_delay_sec=0.02)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, _config(tmp_path), backend)
            await nursery.start(client.run)
            await client.connect(node.addrs[0])
            async with aclosing(client.request(node.peer_id, _req(1))) as frames:
                assert isinstance(await anext(frames), ChunkFrame)
            assert client.streams.idle(node.peer_id) == 0
            await eventually_trio(lambda: backend.closed_early == 1, timeout=30)
            backend.chunk_delay_sec = 0.0
            assert isinstance((await _collect(client, node.peer_id, _req(2)))[-1], Done)
            assert node.service.cancelled == 1
            nursery.cancel_scope.cancel()


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_pool_hands_back_the_newest_stream_and_drops_expired_ones():
    clock = _Clock()
    pool = StreamPool(idle_s=10.0, max_idle_per_peer=2, clock=clock)
    assert pool.take("a") == (None, [])
    assert pool.give("a", "s1") is None  # type: ignore[arg-type]
    clock.now += 8
    assert pool.give("a", "s2") is None  # type: ignore[arg-type]
    assert pool.give("a", "s3") == "s1"  # type: ignore[arg-type]  # over the per-peer limit: oldest out
    assert pool.take("a") == ("s3", [])
    clock.now += 15
    assert pool.take("a") == (None, ["s2"])
    assert pool.idle("a") == 0
    assert pool.reused == 1
