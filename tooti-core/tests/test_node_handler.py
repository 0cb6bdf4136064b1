"""Unit tests of tooti.node.handler, tooti.node.local and tooti.wire.error_codes with a tiny fake backend."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import anyio
import msgspec
import pytest

from tooti.backends.protocol import BackendHealth, BackendSettings, LoadSnapshot, ModelInfo
from tooti.errors import (
    BackendBadRequest,
    BackendError,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    MalformedResponse,
    ModelNotFound,
    UpstreamError,
)
from tooti.network import Network
from tooti.node.handler import handle_request
from tooti.node.local import LocalNetwork
from tooti.node.perf import PerfTracker
from tooti.wire.error_codes import NodeUnauthorized, error_from_frame, error_to_frame
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, InferRequest, ResultFrame, UsageFrame


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request):
    return request.param


class _Cfg(msgspec.Struct):
    pass


class TinyBackend:
    name: ClassVar[str] = "tiny"
    config_type: ClassVar[type[msgspec.Struct]] = _Cfg

    def __init__(self, *, chunks: int = 3, fail: BaseException | None = None, fail_after: int = -1, hang=False):
        self.chunks = chunks
        self.fail = fail
        self.fail_after = fail_after
        self.hang = hang
        self.closed_streams = 0
        self.bodies: list[dict[str, Any]] = []

    @classmethod
    def from_config(cls, settings: BackendSettings, config: msgspec.Struct):
        return cls()

    async def start(self) -> None:
        pass

    async def health(self) -> BackendHealth:
        return BackendHealth(ok=True)

    async def list_models(self) -> list[ModelInfo]:
        return [ModelInfo(id="m1", aliases=("m1:latest",), context_length=2048)]

    async def load(self) -> LoadSnapshot:
        return LoadSnapshot()

    def _maybe_fail(self):
        if self.fail is not None and self.fail_after < 0:
            raise self.fail

    async def chat(self, body):
        self.bodies.append(body)
        self._maybe_fail()
        return {"object": "chat.completion", "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}

    async def chat_stream(self, body):
        self.bodies.append(body)
        try:
            self._maybe_fail()
            for i in range(self.chunks):
                if i == self.fail_after and self.fail is not None:
                    raise self.fail
                if self.hang and i == 1:
                    await anyio.sleep(3600)
                yield {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": f"t{i}"}}]}
            yield {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": self.chunks, "total_tokens": 9}}
        finally:
            self.closed_streams += 1

    async def completion(self, body):
        self.bodies.append(body)
        return {"object": "text_completion", "choices": [{"text": "x"}]}

    async def embeddings(self, body):
        self.bodies.append(body)
        return {"object": "list", "data": [{"embedding": [0.0]}], "usage": {"prompt_tokens": 2, "total_tokens": 2}}

    async def aclose(self) -> None:
        pass


def _req(**kw) -> InferRequest:
    base = {"request_id": "r1", "model": "m1", "body": {"messages": [{"role": "user", "content": "hi"}]}}
    base.update(kw)
    return InferRequest(**base)


async def _collect(agen):
    return [f async for f in agen]


@pytest.mark.anyio
async def test_stream_yields_chunks_in_order_then_usage_then_done():
    backend, perf = TinyBackend(chunks=4), PerfTracker()
    with anyio.fail_after(5):
        frames = await _collect(handle_request(backend, _req(stream=True), perf=perf))
    chunks = [f for f in frames if isinstance(f, ChunkFrame)]
    assert [c.data["choices"][0]["delta"]["content"] for c in chunks[:4]] == ["t0", "t1", "t2", "t3"]
    assert isinstance(frames[-2], UsageFrame)
    assert frames[-2].completion_tokens == 4
    assert isinstance(frames[-1], Done)
    assert perf.ttft_ms is not None
    assert perf.requests == 1
    assert backend.closed_streams == 1
    assert backend.bodies[0]["model"] == "m1"


@pytest.mark.anyio
async def test_backend_usage_becomes_a_usage_frame_and_leaves_the_chunks():
    """The node reports usage once, as a frame; the gateway's relay alone decides what the client sees."""
    frames = await _collect(handle_request(TinyBackend(chunks=2), _req(stream=True)))
    assert all("usage" not in f.data for f in frames if isinstance(f, ChunkFrame))
    assert len([f for f in frames if isinstance(f, ChunkFrame)]) == 2  # the usage-only chunk is not sent
    usage = [f for f in frames if isinstance(f, UsageFrame)]
    assert [(u.prompt_tokens, u.completion_tokens, u.total_tokens) for u in usage] == [(4, 2, 9)]
    frames = await _collect(handle_request(TinyBackend(), _req()))
    assert "usage" not in frames[0].data
    assert isinstance(frames[1], UsageFrame)
    assert frames[1].total_tokens == 5


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["chat", "completion", "embeddings"])
async def test_unary_kinds_yield_one_result(kind):
    with anyio.fail_after(5):
        frames = await _collect(handle_request(TinyBackend(), _req(kind=kind)))
    assert isinstance(frames[0], ResultFrame)
    assert isinstance(frames[-1], Done)
    usage = [f for f in frames if isinstance(f, UsageFrame)]
    # TinyBackend's completion reports no usage; an embeddings answer's has no completion_tokens (0)
    assert (
        usage
        == {
            "chat": [UsageFrame(prompt_tokens=3, completion_tokens=2, total_tokens=5)],
            "completion": [],
            "embeddings": [UsageFrame(prompt_tokens=2, completion_tokens=0, total_tokens=2)],
        }[kind]
    )
    assert "usage" not in frames[0].data  # the gateway decides what the client sees


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "code"),
    [
        (BackendUnavailable("x"), "unavailable"),
        (BackendTimeout("x"), "timeout"),
        (ModelNotFound("x"), "model_not_found"),
        (BackendBadRequest("x"), "bad_request"),
        (BackendOverloaded("x"), "overloaded"),
        (UpstreamError("x"), "upstream"),
        (MalformedResponse("x"), "malformed"),
        (BackendError("x"), "upstream"),
        (RuntimeError("plugin bug"), "upstream"),
    ],
)
async def test_errors_become_error_frames(error, code):
    for stream in (False, True):
        frames = await _collect(handle_request(TinyBackend(fail=error), _req(stream=stream)))
        assert len(frames) == 1
        assert isinstance(frames[0], ErrorFrame)
        assert frames[0].code == code


@pytest.mark.anyio
async def test_mid_stream_error_ends_with_error_frame_and_closes_backend():
    backend = TinyBackend(chunks=5, fail=UpstreamError("boom"), fail_after=2)
    frames = await _collect(handle_request(backend, _req(stream=True)))
    assert [type(f) for f in frames] == [ChunkFrame, ChunkFrame, ErrorFrame]
    assert backend.closed_streams == 1


@pytest.mark.anyio
async def test_deadline_turns_into_timeout_frame():
    backend = TinyBackend(chunks=5, hang=True)
    deadline = int((time.time() + 0.2) * 1000)
    with anyio.fail_after(5):
        frames = await _collect(handle_request(backend, _req(stream=True, deadline_ms=deadline)))
    assert isinstance(frames[-1], ErrorFrame)
    assert frames[-1].code == "timeout"
    assert backend.closed_streams == 1
    past = await _collect(handle_request(backend, _req(deadline_ms=1)))
    assert isinstance(past[0], ErrorFrame)
    assert past[0].code == "timeout"


@pytest.mark.anyio
async def test_closing_the_generator_closes_the_backend_stream():
    backend = TinyBackend(chunks=10)
    agen = handle_request(backend, _req(stream=True))
    first = await agen.__anext__()
    assert isinstance(first, ChunkFrame)
    await agen.aclose()
    assert backend.closed_streams == 1


def test_error_frames_round_trip_to_the_same_class():
    for cls in (
        BackendUnavailable,
        BackendTimeout,
        ModelNotFound,
        BackendBadRequest,
        BackendOverloaded,
        UpstreamError,
        MalformedResponse,
        NodeUnauthorized,
    ):
        assert type(error_from_frame(error_to_frame(cls("msg")))) is cls
    assert isinstance(error_from_frame(ErrorFrame(code="unauthorized", message="no")), BackendUnavailable)
    assert len(error_to_frame(UpstreamError("x" * 10_000)).message) <= 512


def test_perf_tracker_ema():
    perf = PerfTracker(alpha=0.5)
    perf.record_ttft(100)
    perf.record_ttft(200)
    assert perf.ttft_ms == 150
    perf.record_decode(10, 1.0)
    perf.record_decode(0, 1.0)
    assert perf.tokens_per_s == 10
    with pytest.raises(ValueError, match="alpha"):
        PerfTracker(alpha=0)


@pytest.mark.anyio
async def test_local_network_implements_network():
    net = LocalNetwork()
    assert isinstance(net, Network)
    view = await net.add_backend("peer-a", TinyBackend(chunks=2), region="eu")
    assert view.serves() == {"m1", "m1:latest"}
    assert [n.peer_id for n in net.nodes()] == ["peer-a"]
    frames = await _collect(net.infer("peer-a", _req(stream=True)))
    assert isinstance(frames[-1], Done)
    assert net.nodes()[0].ttft_ms is not None
    net.update_node("peer-a", queued=3)
    assert net.nodes()[0].queued == 3
    net.remove_node("peer-a")
    assert net.nodes() == []
    with pytest.raises(BackendUnavailable):
        await _collect(net.infer("peer-a", _req()))


@pytest.mark.anyio
async def test_local_network_counts_in_flight_and_releases_on_close():
    net = LocalNetwork()
    backend = TinyBackend(chunks=10)
    net.add_node("p", backend, ["m1"])
    agen = net.infer("p", _req(stream=True))
    await agen.__anext__()
    assert net.nodes()[0].in_flight == 1
    await agen.aclose()
    assert net.nodes()[0].in_flight == 0
    assert backend.closed_streams == 1
