"""P2PNetwork (asyncio) against a node agent running in its own trio thread, over real libp2p."""

from __future__ import annotations

import asyncio
import functools

import pytest

from tooti.config.model import Config, HeartbeatSection, ListenSection, NodeSection
from tooti.errors import BackendUnavailable
from tooti.network import Network
from tooti.node.agent import run_node
from tooti.p2p.bridge import TrioThread
from tooti.p2p.p2p_network import P2PNetwork
from tooti.p2p.runtime import RuntimeSettings
from tooti.testing import FakeBackend, eventually_asyncio
from tooti.wire.infer import ChunkFrame, Done, InferRequest

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def node(tmp_path):
    backend = FakeBackend(models=("fake-model",), chunks=40, chunk_delay_sec=0.05)
    config = Config(
        node=NodeSection(name="bridge-node", identity_key_file=str(tmp_path / "node.key")),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
    )
    thread = TrioThread("test-node")
    started = thread.start(functools.partial(run_node, config, backend))
    yield started, backend
    thread.stop()
    assert not thread.running


def _req():
    return InferRequest(
        request_id="b1", model="fake-model", stream=True, body={"messages": [{"role": "user", "content": "hi"}]}
    )


@pytest.mark.anyio
async def test_p2p_network_discovers_streams_and_cancels(node):
    started, backend = node
    settings = RuntimeSettings(bootstrap_peers=started.addrs, heartbeat_interval=INTERVAL, bootstrap_interval=1.0)
    async with asyncio.timeout(30), P2PNetwork(settings) as net:
        assert isinstance(net, Network)
        assert net.listen_addrs()[0].endswith(f"/p2p/{net.peer_id}")
        await eventually_asyncio(lambda: [n.peer_id for n in net.nodes()] == [started.peer_id], timeout=30)
        assert net.nodes()[0].serves() == {"fake-model"}

        backend.chunk_delay_sec = 0.0
        frames = [f async for f in net.infer(started.peer_id, _req())]
        assert isinstance(frames[-1], Done)
        assert sum(isinstance(f, ChunkFrame) for f in frames) == 41
        # The asyncio path stops reading at Done; the stream is still kept for the next request.
        frames = [f async for f in net.infer(started.peer_id, _req())]
        assert isinstance(frames[-1], Done)
        assert net._runtime is not None
        assert net._runtime.streams.reused == 1

        # Closing the asyncio iterator mid-stream resets the libp2p stream and closes the backend stream.
        backend.chunk_delay_sec = 0.05
        stream = net.infer(started.peer_id, _req())
        assert isinstance(await anext(stream), ChunkFrame)
        await stream.aclose()
        await eventually_asyncio(lambda: backend.closed_early == 1, timeout=30)
        await eventually_asyncio(lambda: started.service.cancelled == 1, timeout=30)

        # Cancelling the consuming asyncio task (a client disconnect) has the same effect.
        async def consume():
            async for _ in net.infer(started.peer_id, _req()):
                pass

        task = asyncio.create_task(consume())
        await eventually_asyncio(lambda: backend.in_flight == 1, timeout=30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await eventually_asyncio(lambda: backend.closed_early == 2, timeout=30)
        await eventually_asyncio(lambda: started.service.cancelled == 2, timeout=30)

        # The connection survives the resets: a later request works.
        backend.chunk_delay_sec = 0.0
        frames = [f async for f in net.infer(started.peer_id, _req())]
        assert isinstance(frames[-1], Done)

        with pytest.raises(BackendUnavailable):
            [f async for f in net.infer("12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK", _req())]
        assert await net.find_providers("fake-model") == [started.peer_id]


@pytest.mark.anyio
async def test_port_in_use_is_a_clear_error():
    import socket

    from tooti.p2p.runtime import ListenError

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        net = P2PNetwork(RuntimeSettings(tcp_port=busy.getsockname()[1]))
        with pytest.raises(ListenError, match="cannot listen"):
            await net.start()
        await net.stop()
