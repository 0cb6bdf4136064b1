"""A real node agent serving a real llama.cpp backend, reached over a real /tooti/infer/1.0.0 stream."""

from __future__ import annotations

from contextlib import aclosing

import pytest
import trio

from tooti.backends.protocol import BackendSettings
from tooti.config.model import Config, HeartbeatSection, ListenSection, NetworkSection, NodeSection
from tooti.node.agent import run_node
from tooti.p2p.identity import generate_identity
from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
from tooti.testing import eventually_trio
from tooti.wire.infer import ChunkFrame, Done, InferRequest, UsageFrame

pytestmark = [
    pytest.mark.live,
    # Under trio, closing an httpx stream early leaves httpcore's inner body generator to the garbage
    # collector, and trio's finalizer warns (httpx iterates it without aclosing; asyncio is silent).
    # The backend did close its HTTP response (asserted below through closed_early); only this
    # generator's finalization is deferred.
    pytest.mark.filterwarnings("ignore:Async generator 'http(x|core)[._]:ResourceWarning"),
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <async_generator object (AsyncResponseStream|AsyncHTTP11Connection"
        "|HTTP11ConnectionByteStream|PoolByteStream|Response|BoundAsyncStream)[.]:pytest.PytestUnraisableExceptionWarning"
    ),
]

INTERVAL = 0.3


@pytest.fixture
def anyio_backend():
    return "trio"


class RecordingBackend:
    """Delegates to a real backend and records what its chat streams produced and how they ended."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.chunks = []
        self.closed_early = 0
        self.finished = 0

    def __getattr__(self, attr):
        return getattr(self.inner, attr)

    async def chat_stream(self, body):
        done = False
        try:
            async with aclosing(self.inner.chat_stream(body)) as chunks:
                async for chunk in chunks:
                    self.chunks.append(chunk)
                    yield chunk
            done = True
            self.finished += 1
        finally:
            if not done:
                self.closed_early += 1


@pytest.fixture
async def llama_backend(llama_server):
    from tooti_backend_llamacpp.backend import LlamaCppBackend
    from tooti_backend_llamacpp.config import LlamaCppConfig

    backend = LlamaCppBackend(BackendSettings(base_url=llama_server.base_url), LlamaCppConfig())
    await backend.start()
    try:
        yield RecordingBackend(backend)
    finally:
        await backend.aclose()


def _request(model, max_tokens):
    return InferRequest(
        request_id="llama-1",
        model=model,
        stream=True,
        body={"messages": [{"role": "user", "content": "Count from one to twenty."}], "max_tokens": max_tokens},
    )


@pytest.mark.anyio
async def test_streamed_chat_over_libp2p_delivers_every_chunk_in_order_and_cancels(tmp_path, llama_backend):
    config = Config(
        node=NodeSection(name="llama-node", identity_key_file=str(tmp_path / "n.key")),
        listen=ListenSection(host="127.0.0.1", tcp_port=0),
        heartbeat=HeartbeatSection(interval_sec=INTERVAL),
        network=NetworkSection(),
    )
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            node = await nursery.start(run_node, config, llama_backend)
            gateway = P2PRuntime(
                generate_identity(), RuntimeSettings(bootstrap_peers=node.addrs, heartbeat_interval=INTERVAL)
            )
            await nursery.start(gateway.run)
            await eventually_trio(gateway.registry.snapshot, timeout=60)
            model = gateway.registry.snapshot()[0].models[0].name

            async with aclosing(gateway.request(node.peer_id, _request(model, 24))) as frames:
                received = [f async for f in frames]
            chunks = [f.data for f in received if isinstance(f, ChunkFrame)]
            assert isinstance(received[-1], Done)
            assert len(chunks) >= 2
            # Every chunk, in order, unchanged but for usage, which travels in the usage frame only.
            sent = [c for c in llama_backend.chunks if c.get("choices") or "usage" not in c]
            assert chunks == [{k: v for k, v in c.items() if k != "usage"} for c in sent]
            assert all("usage" not in c for c in chunks)
            usage = [f for f in received if isinstance(f, UsageFrame)]
            assert len(usage) == 1
            assert usage[0].completion_tokens > 0
            assert llama_backend.finished == 1

            # Cancellation: close the client side after three chunks; the backend stream is closed early.
            async with aclosing(gateway.request(node.peer_id, _request(model, 400))) as frames:
                seen = 0
                async for frame in frames:
                    seen += isinstance(frame, ChunkFrame)
                    if seen == 3:
                        break
            await eventually_trio(lambda: llama_backend.closed_early >= 1 and node.service.cancelled >= 1, timeout=30)
            assert node.service.cancelled == 1
            assert node.perf.ttft_ms is not None
            nursery.cancel_scope.cancel()
