"""How the node writes an answer: frames that queue up behind a slow write go out together.

A fake stream (trio) records every write; the frames inside are decoded again to check that
nothing is lost, reordered or split, and that a client that goes away still closes the backend.
"""

from __future__ import annotations

import pytest
import trio
from libp2p.network.stream.exceptions import StreamEOF, StreamReset

from tooti.node.handler import handle_request
from tooti.node.perf import PerfTracker
from tooti.p2p.framing import (
    MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME,
    EndOfStream,
    FrameReader,
    decode_response,
    encode_frame,
)
from tooti.p2p.infer_server import InferService
from tooti.testing import FakeBackend
from tooti.wire.infer import ChunkFrame, Done, InferRequest, UsageFrame


@pytest.fixture
def anyio_backend():
    return "trio"


class _Conn:
    peer_id = "12D3KooWgateway"


class _Bytes:
    """An async byte source for :class:`FrameReader`."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    async def read(self, n: int | None = None) -> bytes:
        out, self.data = self.data[: n or len(self.data)], self.data[n or len(self.data) :]
        return out


class FakeStream:
    """A half-closed client stream: the request is read once, then reads end (or fail once reset)."""

    muxed_conn = _Conn()

    def __init__(self, request: InferRequest, *, first_write_delay: float = 0.0, fail_write: int | None = None):
        self._request: bytes | None = encode_frame(request, limit=MAX_REQUEST_FRAME)
        self.first_write_delay = first_write_delay
        self.fail_write = fail_write
        self.writes: list[bytes] = []
        self.written_at: list[float] = []
        """trio's clock at the end of each write."""
        self.closed = False
        self.was_reset = False

    async def read(self, n: int | None = None) -> bytes:
        if self._request is not None:
            data, self._request = self._request, None
            return data
        await trio.lowlevel.checkpoint()
        if self.was_reset:
            raise StreamReset("reset")
        raise StreamEOF("half-closed")

    async def write(self, data: bytes) -> None:
        if self.fail_write is not None and len(self.writes) == self.fail_write:
            self.was_reset = True
            raise StreamReset("client went away")
        if not self.writes and self.first_write_delay:
            await trio.sleep(self.first_write_delay)  # a slow client: the delay IS the behaviour under test
        self.writes.append(data)
        self.written_at.append(trio.current_time())

    async def close(self) -> None:
        self.closed = True

    async def reset(self) -> None:
        self.was_reset = True

    async def frames(self) -> list[object]:
        """Every frame the node wrote, decoded from the concatenated writes."""
        reader = FrameReader(_Bytes(b"".join(self.writes)), limit=MAX_RESPONSE_FRAME)
        out: list[object] = []
        while True:
            try:
                out.append(decode_response(await reader.read_payload()))
            except EndOfStream:
                return out


def _handler(backend: FakeBackend):
    """The node agent's handler: ``handle_request`` bound to one backend."""
    perf = PerfTracker()
    return lambda request: handle_request(backend, request, perf=perf)


def _request(max_tokens: int = 40) -> InferRequest:
    return InferRequest(
        request_id="w1",
        model="fake-model",
        stream=True,
        body={"messages": [{"role": "user", "content": "x"}], "max_tokens": max_tokens},
    )


@pytest.mark.anyio
async def test_frames_queued_behind_a_slow_write_go_out_together_in_order():
    backend = FakeBackend(reply=" ".join(f"w{i}" for i in range(40)), chunks=40)
    service = InferService(_handler(backend))
    stream = FakeStream(_request(), first_write_delay=0.2)

    await service.handle(stream)  # type: ignore[arg-type]

    frames = await stream.frames()
    chunks = [f for f in frames if isinstance(f, ChunkFrame)]
    assert len(chunks) == 41  # 40 content chunks and the final one with finish_reason
    text = "".join(c.data["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text.split() == backend.reply.split()
    assert isinstance(frames[-2], UsageFrame)
    assert isinstance(frames[-1], Done)
    # The first frame went alone; everything produced during its slow write followed in one batch.
    assert len(stream.writes) < len(frames) / 4
    assert stream.closed
    assert not stream.was_reset
    assert service.served == 1


@pytest.mark.anyio
async def test_each_frame_is_written_at_once_when_the_client_keeps_up():
    backend = FakeBackend(chunks=4, chunk_delay_sec=0.02)
    service = InferService(_handler(backend))
    stream = FakeStream(_request())

    await service.handle(stream)  # type: ignore[arg-type]

    frames = await stream.frames()
    assert isinstance(frames[-1], Done)
    # 4 content chunks, each 20 ms apart, are not held back to fill a batch.
    assert len(stream.writes) >= 4


@pytest.mark.anyio
async def test_a_client_gone_mid_answer_closes_the_backend_stream():
    backend = FakeBackend(chunks=40, chunk_delay_sec=0.005)
    service = InferService(_handler(backend))
    stream = FakeStream(_request(), fail_write=2)

    with trio.fail_after(10):
        await service.handle(stream)  # type: ignore[arg-type]

    assert backend.closed_early == 1
    assert backend.streams[0].chunks_sent < 40
    assert service.cancelled == 1
    assert stream.was_reset


@pytest.mark.anyio
async def test_a_whole_answer_is_one_write():
    backend = FakeBackend()
    service = InferService(_handler(backend))
    stream = FakeStream(
        InferRequest(request_id="w2", model="fake-model", body={"messages": [{"role": "user", "content": "x"}]})
    )

    await service.handle(stream)  # type: ignore[arg-type]

    assert [type(f).__name__ for f in await stream.frames()] == ["ResultFrame", "UsageFrame", "Done"]
    assert len(stream.writes) == 1  # the client reads the whole answer with one Noise message


def _count(data: bytes) -> int:
    """How many length-prefixed frames one write carries."""
    n = i = 0
    while i < len(data):
        i += 4 + int.from_bytes(data[i : i + 4], "big")
        n += 1
    return n


@pytest.mark.anyio
async def test_chunks_within_the_write_window_share_a_write_and_the_first_goes_alone():
    backend = FakeBackend(reply=" ".join(f"w{i}" for i in range(40)), chunks=40, chunk_delay_sec=0.001)
    service = InferService(_handler(backend), write_window=0.03)
    stream = FakeStream(_request())

    await service.handle(stream)  # type: ignore[arg-type]

    frames = await stream.frames()
    assert len([f for f in frames if isinstance(f, ChunkFrame)]) == 41
    assert isinstance(frames[-1], Done)
    assert _count(stream.writes[0]) == 1  # the first chunk is not held back
    # 40 chunks ~1 ms apart (more under load) in a 30 ms window: a handful of writes, not 40.
    assert len(stream.writes) <= 12


@pytest.mark.anyio
async def test_without_a_window_every_chunk_of_a_keeping_up_client_is_its_own_write():
    backend = FakeBackend(reply=" ".join(f"w{i}" for i in range(10)), chunks=10, chunk_delay_sec=0.005)
    service = InferService(_handler(backend), write_window=0)
    stream = FakeStream(_request())

    await service.handle(stream)  # type: ignore[arg-type]

    assert len(stream.writes) >= 10


@pytest.mark.anyio
async def test_the_first_token_after_a_role_only_chunk_is_not_held_by_the_window():
    async def handler(request):
        def chunk(delta):
            return ChunkFrame(data={"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta}]})

        yield chunk({"role": "assistant", "content": ""})
        await trio.sleep(0.005)  # the model's token timing is what the write window is tested against
        yield chunk({"content": "first"})
        await trio.sleep(0.05)  # (as above)
        yield chunk({"content": "second"})
        yield Done()

    service = InferService(handler, write_window=0.2)
    stream = FakeStream(_request())

    await service.handle(stream)  # type: ignore[arg-type]

    # role chunk, then the first token alone (not kept 200 ms for "second"), then the rest
    assert [_count(w) for w in stream.writes] == [1, 1, 2]


@pytest.mark.anyio
async def test_the_end_of_an_answer_is_not_held_by_the_window():
    """Usage and Done go out when they are in, though the handler lingers (closing its upstream)."""

    async def handler(request):
        yield ChunkFrame(data={"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "a"}}]})
        await trio.sleep(0.01)  # the model's token timing is what the write window is tested against
        yield ChunkFrame(data={"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "b"}}]})
        yield UsageFrame(prompt_tokens=1, completion_tokens=2, total_tokens=3)
        yield Done()
        await trio.sleep(2)  # the backend still closing its connection: nothing more to send

    service = InferService(handler, write_window=1.0)
    stream = FakeStream(_request())
    started = trio.current_time()
    await service.handle(stream)  # type: ignore[arg-type]

    frames = await stream.frames()
    assert isinstance(frames[-1], Done)
    # "b", usage and Done together, right after "b" arrived: not after the 1 s window, nor after the 2 s linger
    assert [_count(w) for w in stream.writes] == [1, 3]
    assert stream.written_at[-1] - started < 0.5


@pytest.mark.anyio
async def test_chunks_slower_than_the_window_are_written_at_once():
    """A backend slower than the window (a real model) gains nothing from waiting: no chunk is held."""
    yielded_at: list[float] = []

    async def handler(request):
        for word in ("a", "b", "c", "d"):
            yielded_at.append(trio.current_time())
            yield ChunkFrame(
                data={"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word}}]}
            )
            await trio.sleep(0.3)  # a backend slower than the window: the pace IS the behaviour under test
        yield Done()

    service = InferService(handler, write_window=0.2)
    stream = FakeStream(_request())
    await service.handle(stream)  # type: ignore[arg-type]

    assert [_count(w) for w in stream.writes] == [1, 1, 1, 1, 1]
    # every chunk went out as it came, not 0.2 s later (the window is for backends faster than it)
    assert max(w - y for w, y in zip(stream.written_at, yielded_at, strict=False)) < 0.1


@pytest.mark.anyio
async def test_the_request_deadline_bounds_the_whole_answer_with_a_timeout_frame():
    """The p2p service enforces the deadline around the answer, not only the handler near it."""
    import time

    from tooti.wire.infer import ErrorFrame

    async def stalls(request: InferRequest):
        yield ChunkFrame(data={"choices": [{"index": 0, "delta": {"content": "x"}}]})
        await trio.sleep_forever()  # a model server that stops sending, no timer of its own
        yield Done()

    service = InferService(stalls)
    request = InferRequest(
        request_id="w3",
        model="fake-model",
        stream=True,
        body={"messages": [{"role": "user", "content": "x"}]},
        deadline_ms=int((time.time() + 0.3) * 1000),
    )
    stream = FakeStream(request)

    with trio.fail_after(5):
        await service.handle(stream)  # type: ignore[arg-type]

    frames = await stream.frames()
    assert isinstance(frames[0], ChunkFrame)
    assert isinstance(frames[-1], ErrorFrame)
    assert frames[-1].code == "timeout"
