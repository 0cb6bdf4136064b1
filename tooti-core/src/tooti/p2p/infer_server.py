"""The node side of ``/tooti/infer/1.0.0``: requests answered with response frames, one at a time per stream.

A stream carries one request after another: after an answer's ``Done`` the node waits for the
next request on the same stream (a client that half-closed, or that stays silent for
:data:`IDLE_STREAM_TIMEOUT`, ends it). Reusing a stream saves the gateway a stream open and its
protocol negotiation, one network round trip per request.

Each stream is isolated: a malformed, oversized or slow request resets that stream only. A peer
outside ``node.allowed_gateway_peers`` gets an ``unauthorized`` error frame; beyond
``node.max_concurrent_requests`` callers get ``overloaded``; an answer that ends in an error frame
also ends the stream. When the client resets the stream the frame generator is closed, which closes
the backend's stream and stops generation upstream.
"""

from __future__ import annotations

import logging
import math
import time
from contextlib import suppress
from typing import TYPE_CHECKING, Literal

import trio

from tooti._aio import closing_iter
from tooti.errors import BackendTimeout
from tooti.p2p.framing import (
    MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME,
    EndOfStream,
    FrameError,
    FrameReader,
    FrameTooLarge,
    decode_request,
    encode_frame,
)
from tooti.p2p.inbox import Inbox
from tooti.p2p.safestream import close_stream, reset_stream
from tooti.wire.error_codes import error_to_frame
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, ResponseFrame, carries_token

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterable

    from libp2p.abc import INetStream

    from tooti.wire.infer import InferRequest

    RequestHandler = Callable[[InferRequest], AsyncIterator[ResponseFrame]]
    """Answers one request as response frames ending with Done or an ErrorFrame; never raises."""

__all__ = ["InferService"]

log = logging.getLogger(__name__)

REQUEST_READ_TIMEOUT = 30.0
"""A client must deliver its first request frame within this time (slow-loris guard)."""
IDLE_STREAM_TIMEOUT = 60.0
"""A stream with no next request for this long is closed (clients drop idle streams sooner)."""
RESET_GRACE = 2.0
"""After a reset, a backend still silent this long is cancelled mid-read."""
WRITE_TIMEOUT = 10.0
"""A client that does not read for this long (flow-control window full) is dropped."""
PENDING_FRAMES = 64
"""Frames read from the backend but not yet written; a full buffer holds the backend back."""
COALESCE_BYTES = 64 * 1024
"""Frames already waiting are joined into one write up to about this many bytes."""
WRITE_WINDOW = 0.005
"""Default seconds a chunk after an answer's first waits for more to share its write (``node.write_window_ms``)."""


_Ending = Literal["next", "close", "reset", "done"]
"""After an answer: wait for the ``next`` request, ``close`` or ``reset`` the stream, or ``done`` (closed)."""


class _ClientGone(Exception):
    """The client reset the stream or the connection dropped."""


class _Malformed(Exception):
    """The stream's request was malformed, too large or too slow; the stream is reset."""


class InferService:
    """Serves inference streams with a request handler the node agent supplies.

    The handler is the node's application code (:func:`tooti.node.handler.handle_request` bound to a
    backend); taking it as a parameter keeps ``tooti.p2p`` free of imports from ``tooti.node``, so the
    transport depends on nothing above it. Counters (``served``, ``rejected``, ``malformed``,
    ``cancelled``) are for tests and status output.
    """

    def __init__(
        self,
        handler: RequestHandler,
        *,
        allowed_peers: Iterable[str] = (),
        max_concurrent: int = 16,
        write_window: float = WRITE_WINDOW,
        admit: Callable[[str, InferRequest], bool] | None = None,
    ) -> None:
        self.handler = handler
        self.admit = admit
        """Per request: may this peer, with what the request presents (a certificate), be served?"""
        self.write_window = write_window
        self.allowed = frozenset(allowed_peers)
        self.max_concurrent = max_concurrent
        self.in_flight = 0
        self.served = 0
        self.rejected = 0
        self.malformed = 0
        self.cancelled = 0

    async def handle(self, stream: INetStream) -> None:
        """The libp2p stream handler; never raises (one bad stream must not hurt the others)."""
        try:
            await self._handle(stream)
        except Exception as exc:  # noqa: BLE001 - isolate every stream's failure
            log.debug("infer stream failed: %s: %s", type(exc).__name__, exc)
            await reset_stream(stream)

    async def _reject(self, stream: INetStream, frame: ErrorFrame) -> None:
        self.rejected += 1
        await stream.write(encode_frame(frame, limit=MAX_RESPONSE_FRAME))
        await close_stream(stream)

    async def _read_request(self, reader: FrameReader, *, first: bool) -> InferRequest | None:
        """The next request; ``None`` when the stream should end (the reason is already handled)."""
        try:
            with trio.fail_after(REQUEST_READ_TIMEOUT if first else IDLE_STREAM_TIMEOUT):
                return decode_request(await reader.read_payload())
        except EndOfStream:
            if not first:
                return None  # the client is done with this stream
            reason: object = "stream ended before a request"
        except trio.TooSlowError:
            if not first:
                return None  # idle stream
            reason = "no request within the read timeout"
        except FrameError as exc:
            reason = "frame too large" if isinstance(exc, FrameTooLarge) else exc
        self.malformed += 1
        log.info("rejecting infer stream: %s", reason)
        raise _Malformed

    async def _handle(self, stream: INetStream) -> None:
        remote = str(stream.muxed_conn.peer_id)
        if self.allowed and remote not in self.allowed:
            await self._reject(stream, ErrorFrame(code="unauthorized", message="this node does not serve your peer id"))
            return
        inbox = Inbox(stream, limit=MAX_REQUEST_FRAME + 4)
        reader = FrameReader(inbox, limit=MAX_REQUEST_FRAME)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(inbox.run)
            ending: _Ending
            try:
                ending = await self._serve_requests(stream, reader, inbox, remote)
            except _Malformed:
                ending = "reset"
            nursery.cancel_scope.cancel()
        if ending == "reset":
            await reset_stream(stream)
        elif ending == "close":
            await close_stream(stream)

    async def _serve_requests(self, stream: INetStream, reader: FrameReader, inbox: Inbox, remote: str) -> _Ending:
        """Answer requests until the stream ends; return ``close``, ``reset`` or ``done`` (already closed)."""
        first = True
        while True:
            request = await self._read_request(reader, first=first)
            if request is None:
                return "reset" if inbox.reset.is_set() else "close"
            first = False
            if self.admit is not None and not self.admit(remote, request):
                await self._reject(stream, ErrorFrame(code="unauthorized", message="this node serves members only"))
                return "done"
            if self.in_flight >= self.max_concurrent:
                await self._reject(stream, ErrorFrame(code="overloaded", message="node at max concurrent requests"))
                return "done"
            self.in_flight += 1
            try:
                ending = await self._serve(stream, request, inbox)
            finally:
                self.in_flight -= 1
            if ending != "next":
                return ending

    async def _serve(self, stream: INetStream, request: InferRequest, inbox: Inbox) -> _Ending:
        """Answer one request; ``next`` when it ended with Done (the stream stays open)."""
        answer = _Answer()
        # The request's deadline as one scope around the whole answer, instead of a timer armed
        # around every chunk the backend sends (profiled: 9 % of a streaming node's CPU).
        body = trio.CancelScope(deadline=_trio_deadline(request.deadline_ms))
        send, receive = trio.open_memory_channel[ResponseFrame](PENDING_FRAMES)
        async with trio.open_nursery() as nursery:
            # A whole answer has no chunk boundary to stop at: cancel it the moment the client resets.
            grace = RESET_GRACE if request.stream else 0.0
            nursery.start_soon(_cancel_after_reset, inbox, body, grace)
            async with trio.open_nursery() as work:
                work.start_soon(self._produce, request, send, inbox, body, answer)
                try:
                    await self._pump(stream, receive, inbox, answer)
                except _ClientGone:
                    answer.gone = True
                finally:
                    receive.close()  # a producer waiting on a full channel stops at once
            nursery.cancel_scope.cancel()
        if answer.gone or inbox.reset.is_set():
            self.cancelled += 1
            return "reset"
        self.served += 1
        return "next" if isinstance(answer.last, Done) else "close"

    async def _produce(
        self,
        request: InferRequest,
        send: trio.MemorySendChannel[ResponseFrame],
        inbox: Inbox,
        body: trio.CancelScope,
        answer: _Answer,
    ) -> None:
        """Read the backend's frames into ``send`` until the answer ends or the client is gone."""
        async with send:
            try:
                with body:
                    async with closing_iter(self.handler(request)) as frames:
                        async for frame in frames:
                            if inbox.reset.is_set():
                                break  # close the backend stream between chunks, not mid-read
                            try:
                                # Without waking the writer: it sleeps through its write window and
                                # takes what queued up (the backend read already checkpoints).
                                send.send_nowait(frame)
                            except trio.WouldBlock:
                                await send.send(frame)
                            except (trio.BrokenResourceError, trio.ClosedResourceError):
                                break
                            if isinstance(frame, ChunkFrame):
                                answer.chunk_arrived(trio.current_time())
                            else:
                                answer.end_window()  # usage, Done, an error: no reason to hold them
                if body.cancelled_caught and not inbox.reset.is_set():
                    # The deadline passed: the gateway gets a timeout, not a stream cut short.
                    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await send.send(error_to_frame(BackendTimeout("request deadline exceeded on the node")))
            finally:
                answer.end_window()

    async def _pump(
        self,
        stream: INetStream,
        receive: trio.MemoryReceiveChannel[ResponseFrame],
        inbox: Inbox,
        answer: _Answer,
    ) -> None:
        """Write frames as they come, several per write where that costs no latency worth having.

        The wire format is unchanged (the frames are concatenated, each keeps its length prefix),
        but one write costs one Noise encryption and one yamux frame however many frames it
        carries. Frames up to and including an answer's first token go at once (time to first
        token is not traded). A later chunk waits up to ``write_window`` for the chunks right
        behind it when the backend is streaming faster than the window (its last two chunks
        arrived closer together than that), so a model server that sends a token every 2 ms costs
        one write per two or three tokens; inter-token delay grows by at most the window. A slower
        backend (a real model at tens of milliseconds per token) gets every chunk written at once.
        Frames that queued up behind a slow write always go out together.
        """
        first_token_sent = False
        async for frame in receive:
            answer.last = frame
            batch = [self._encode(frame)]
            size = len(batch[0])
            is_chunk = isinstance(frame, ChunkFrame)
            if first_token_sent and self.write_window > 0 and is_chunk:
                await self._wait_window(answer)
            # Content-free chunks (a role-only delta) do not count: the first token itself goes at once.
            first_token_sent = first_token_sent or not isinstance(frame, ChunkFrame) or carries_token(frame.data)
            await self._gather_ready(receive, answer, batch, size)
            if inbox.reset.is_set():
                return
            await self._write(stream, batch[0] if len(batch) == 1 else b"".join(batch))

    async def _wait_window(self, answer: _Answer) -> None:
        """Sleep through the write window, or until the producer has an answer's last frames.

        The writer sleeps instead of taking each chunk as it arrives: a token then costs the
        producer a buffered send and nothing else, where waking the writer per token cost a trio
        task switch per token (what follows, :meth:`_gather_ready`, takes what queued up).
        """
        if answer.ending or answer.gap > self.write_window:
            return  # the model server is slower than the window: waiting would only delay this chunk
        with trio.CancelScope() as window:
            answer.window = window
            await trio.sleep(self.write_window)
        answer.window = None

    async def _gather_ready(
        self, receive: trio.MemoryReceiveChannel[ResponseFrame], answer: _Answer, batch: list[bytes], size: int
    ) -> None:
        """Add the frames the producer has without waiting on I/O (e.g. an answer's usage and done)."""
        while size < COALESCE_BYTES:
            await trio.lowlevel.cancel_shielded_checkpoint()
            added = False
            while size < COALESCE_BYTES:
                try:
                    more = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
                answer.last = more
                batch.append(self._encode(more))
                size += len(batch[-1])
                added = True
            if not added:
                break

    @staticmethod
    def _encode(frame: ResponseFrame) -> bytes:
        try:
            return encode_frame(frame, limit=MAX_RESPONSE_FRAME)
        except FrameTooLarge:
            return encode_frame(
                ErrorFrame(code="malformed", message="response frame exceeds the size cap"), limit=MAX_RESPONSE_FRAME
            )

    async def _write(self, stream: INetStream, data: bytes) -> None:
        from libp2p.network.stream.exceptions import StreamError

        written = False
        # Shielded: a write cancelled inside the encrypted framing would corrupt the whole connection.
        with trio.move_on_after(WRITE_TIMEOUT) as scope:
            scope.shield = True
            try:
                await stream.write(data)
                written = True
            except StreamError as exc:
                raise _ClientGone from exc
        if not written:
            raise _ClientGone  # the client stopped reading


class _Answer:
    """How one answer went: the last frame queued for the client, whether the client left.

    Also the writer's open write window, which the producer ends when the answer's last frames are in.
    """

    __slots__ = ("arrived_at", "ending", "gap", "gone", "last", "window")

    def __init__(self) -> None:
        self.last: ResponseFrame | None = None
        self.gone = False
        self.ending = False
        self.window: trio.CancelScope | None = None
        self.arrived_at = -math.inf
        self.gap = math.inf
        """Seconds between the last two chunks from the backend (how fast it is streaming now)."""

    def chunk_arrived(self, now: float) -> None:
        self.gap = now - self.arrived_at
        self.arrived_at = now

    def end_window(self) -> None:
        """No more chunks to wait for: write what is queued now, and do not wait again."""
        self.ending = True
        if self.window is not None:
            self.window.cancel()


def _trio_deadline(deadline_ms: int) -> float:
    """A request's wall-clock deadline (ms since the epoch, 0 for none) on trio's clock."""
    if deadline_ms <= 0:
        return math.inf
    return trio.current_time() + (deadline_ms / 1000.0 - time.time())


async def _cancel_after_reset(inbox: Inbox, body: trio.CancelScope, grace: float) -> None:
    """Cancel a backend that stays silent ``grace`` seconds after the client reset.

    On a reset the producer stops at the next chunk and closes the backend stream normally; only a
    silent backend is cancelled mid-read (under trio, cancelling inside an HTTP read leaves the
    client's cleanup to the garbage collector).
    """
    await inbox.reset.wait()
    await trio.sleep(grace)
    body.cancel()
