"""The node side of ``/tooti/infer/1.0.0``: one request per stream, answered with response frames.

Each stream is isolated: a malformed, oversized or slow request resets that stream only. A peer
outside ``node.allowed_gateway_peers`` gets an ``unauthorized`` error frame; beyond
``node.max_concurrent_requests`` callers get ``overloaded``. When the client resets the stream the
frame generator is closed, which closes the backend's stream and stops generation upstream.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import trio

from tooti.node._aio import closing_iter
from tooti.node.handler import handle_request
from tooti.p2p.framing import (
    MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME,
    FrameError,
    FrameReader,
    FrameTooLarge,
    decode_request,
    encode_frame,
)
from tooti.p2p.safestream import close_stream, reset_stream
from tooti.wire.infer import ErrorFrame, ResponseFrame

if TYPE_CHECKING:
    from collections.abc import Iterable

    from libp2p.abc import INetStream

    from tooti.backends.protocol import InferenceBackend
    from tooti.node.perf import PerfTracker
    from tooti.wire.infer import InferRequest

__all__ = ["InferService"]

log = logging.getLogger(__name__)

REQUEST_READ_TIMEOUT = 30.0
"""A client must deliver its request frame within this time (slow-loris guard)."""
RESET_POLL_INTERVAL = 0.25
RESET_GRACE = 2.0
WRITE_TIMEOUT = 10.0
"""A client that does not read for this long (flow-control window full) is dropped."""
PENDING_FRAMES = 64
"""Frames read from the backend but not yet written; a full buffer holds the backend back."""
COALESCE_BYTES = 64 * 1024
"""Frames already waiting are joined into one write up to about this many bytes."""


class _ClientGone(Exception):
    """The client reset the stream or the connection dropped."""


class InferService:
    """Serves inference streams from one backend.

    Counters (``served``, ``rejected``, ``malformed``, ``cancelled``) are for tests and status output.
    """

    def __init__(
        self,
        backend: InferenceBackend,
        perf: PerfTracker,
        *,
        allowed_peers: Iterable[str] = (),
        max_concurrent: int = 16,
    ) -> None:
        self.backend = backend
        self.perf = perf
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

    async def _read_request(self, stream: INetStream, reader: FrameReader) -> InferRequest | None:
        from libp2p.network.stream.exceptions import StreamError

        try:
            with trio.fail_after(REQUEST_READ_TIMEOUT):
                return decode_request(await reader.read_payload())
        except (FrameError, trio.TooSlowError, StreamError) as exc:
            self.malformed += 1
            log.info("rejecting infer stream: %s", "frame too large" if isinstance(exc, FrameTooLarge) else exc)
            await reset_stream(stream)
            return None

    async def _handle(self, stream: INetStream) -> None:
        from libp2p.network.stream.exceptions import StreamEOF

        remote = str(stream.muxed_conn.peer_id)
        if self.allowed and remote not in self.allowed:
            await self._reject(stream, ErrorFrame(code="unauthorized", message="this node does not serve your peer id"))
            return
        reader = FrameReader(stream, limit=MAX_REQUEST_FRAME, eof_types=(StreamEOF,))
        request = await self._read_request(stream, reader)
        if request is None:
            return
        if self.in_flight >= self.max_concurrent:
            await self._reject(stream, ErrorFrame(code="overloaded", message="node at max concurrent requests"))
            return
        self.in_flight += 1
        try:
            await self._serve(stream, request)
        finally:
            self.in_flight -= 1

    async def _serve(self, stream: INetStream, request: InferRequest) -> None:
        watch = _ResetWatch()
        body = trio.CancelScope()
        send, receive = trio.open_memory_channel[ResponseFrame](PENDING_FRAMES)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch.run, stream, body)
            async with trio.open_nursery() as work:
                work.start_soon(self._produce, request, send, watch, body)
                try:
                    await self._pump(stream, receive, watch)
                except _ClientGone:
                    watch.reset.set()
                finally:
                    receive.close()  # a producer waiting on a full channel stops at once
            nursery.cancel_scope.cancel()
        if watch.reset.is_set():
            self.cancelled += 1
            await reset_stream(stream)
            return
        self.served += 1
        await close_stream(stream)

    async def _produce(
        self,
        request: InferRequest,
        send: trio.MemorySendChannel[ResponseFrame],
        watch: _ResetWatch,
        body: trio.CancelScope,
    ) -> None:
        """Read the backend's frames into ``send`` until the answer ends or the client is gone."""
        async with send:
            with body:
                async with closing_iter(handle_request(self.backend, request, perf=self.perf)) as frames:
                    async for frame in frames:
                        if watch.reset.is_set():
                            break  # close the backend stream between chunks, not mid-read
                        try:
                            await send.send(frame)
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            break

    async def _pump(
        self, stream: INetStream, receive: trio.MemoryReceiveChannel[ResponseFrame], watch: _ResetWatch
    ) -> None:
        """Write frames as they come; frames that queued up meanwhile go out together in one write.

        The wire format is unchanged (the frames are concatenated, each keeps its length prefix),
        but one write costs one Noise encryption and one yamux frame however many frames it
        carries, so a node that falls behind its backend catches up instead of falling further back.
        """
        async for frame in receive:
            batch = [self._encode(frame)]
            size = len(batch[0])
            while size < COALESCE_BYTES:
                # Let the producer run: what it has without waiting on I/O (a whole answer's
                # result, usage and done frames; chunks the backend already sent) joins this write.
                await trio.lowlevel.cancel_shielded_checkpoint()
                added = False
                while size < COALESCE_BYTES:
                    try:
                        more = receive.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    batch.append(self._encode(more))
                    size += len(batch[-1])
                    added = True
                if not added:
                    break
            if watch.reset.is_set():
                return
            await self._write(stream, batch[0] if len(batch) == 1 else b"".join(batch))

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


class _ResetWatch:
    """Notices when the client resets its stream, even while the backend is silent.

    The client half-closes after its request, so reads return EOF at once; a reset turns that into
    ``StreamReset``, so polling a few times a second is enough. On a reset the request loop stops at
    the next chunk and closes the backend stream normally; only a backend silent for
    :data:`RESET_GRACE` more seconds is cancelled mid-read (under trio, cancelling inside an HTTP read
    leaves the client's cleanup to the garbage collector).
    """

    def __init__(self) -> None:
        self.reset = trio.Event()

    async def run(self, stream: INetStream, body: trio.CancelScope) -> None:
        from libp2p.network.stream.exceptions import StreamEOF, StreamError

        while not self.reset.is_set():
            try:
                await stream.read(MAX_REQUEST_FRAME)
            except StreamEOF:
                pass
            except StreamError:
                self.reset.set()
                break
            await trio.sleep(RESET_POLL_INTERVAL)
        await trio.sleep(RESET_GRACE)
        body.cancel()
