"""The gateway side of ``/tooti/infer/1.0.0`` (trio): send one request, yield the node's frames.

The stream is opened and closed through :mod:`tooti.p2p.safestream`; closing the generator early
(or cancelling its consumer) resets the stream, which the node turns into closing the backend
request. Consume it under :func:`contextlib.aclosing` so that happens promptly.

With a :class:`~tooti.p2p.stream_pool.StreamPool` a stream whose answer ended with ``Done`` is kept
for the next request to the same node. A kept stream the node has closed meanwhile fails before
its first frame; the request is then sent once more on a new stream (nothing reached the node's
backend, so nothing runs twice).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.errors import BackendUnavailable, MalformedResponse, StreamEnded
from tooti.p2p.framing import (
    MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME,
    EndOfStream,
    FrameError,
    FrameReader,
    decode_response,
    encode_frame,
)
from tooti.p2p.safestream import OPEN_TIMEOUT, close_stream, open_stream, reset_stream, send
from tooti.wire.infer import PROTOCOL_ID, Done, ErrorFrame

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from libp2p.abc import IHost, INetStream
    from libp2p.peer.id import ID

    from tooti.p2p.stream_pool import StreamPool
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["request_frames"]


async def _next_frame(reader: FrameReader, peer: ID) -> ResponseFrame:
    from libp2p.network.stream.exceptions import StreamError

    try:
        return decode_response(await reader.read_payload())
    except EndOfStream:
        raise StreamEnded(f"stream from {peer} ended without done") from None
    except FrameError as exc:
        raise MalformedResponse(f"bad frame from {peer}: {exc}") from None
    except StreamError as exc:
        raise BackendUnavailable(f"stream from {peer} broke: {type(exc).__name__}") from None


async def _exchange(
    stream: INetStream, data: bytes, peer: ID, *, half_close: bool
) -> tuple[FrameReader, ResponseFrame]:
    """Send the request and read the first frame; the stream is reset when that fails."""
    from libp2p.network.stream.exceptions import StreamEOF

    try:
        await send(stream, data, half_close=half_close)
        reader = FrameReader(stream, limit=MAX_RESPONSE_FRAME, eof_types=(StreamEOF,))
        return reader, await _next_frame(reader, peer)
    except BaseException:
        await reset_stream(stream)
        raise


async def _first_frame(
    host: IHost, peer: ID, data: bytes, pool: StreamPool | None, open_timeout: float
) -> tuple[INetStream, FrameReader, ResponseFrame]:
    """Send the request on a kept stream when there is one, else on a new one; read the first frame."""
    if pool is not None:
        kept, expired = pool.take(str(peer))
        for stream in expired:
            await reset_stream(stream)  # a reset waits for nothing; the node ends its side at once
        if kept is not None:
            try:
                return (kept, *await _exchange(kept, data, peer, half_close=False))
            except (BackendUnavailable, StreamEnded):
                pass  # closed or reset by the node while idle: nothing was served, send it on a new stream
    stream = await open_stream(host, peer, PROTOCOL_ID, open_timeout)
    return (stream, *await _exchange(stream, data, peer, half_close=pool is None))


async def request_frames(
    host: IHost,
    peer: ID,
    request: InferRequest,
    *,
    open_timeout: float = OPEN_TIMEOUT,
    pool: StreamPool | None = None,
) -> AsyncGenerator[ResponseFrame, None]:
    """Send ``request`` to ``peer`` and yield response frames up to and including Done or ErrorFrame.

    Args:
        host: the gateway's libp2p host.
        peer: the node.
        request: what to send.
        open_timeout: seconds allowed for opening a new stream.
        pool: keep the stream for the next request after a clean answer (without one, the stream
            carries this request only: it is half-closed after the request and closed after Done).

    Raises:
        BackendUnavailable: the stream could not be opened (in time) or broke mid-answer.
        MalformedResponse: a frame was invalid or the stream ended without Done.
    """
    stream, reader, frame = await _first_frame(
        host, peer, encode_frame(request, limit=MAX_REQUEST_FRAME), pool, open_timeout
    )
    ended: ResponseFrame | None = None
    try:
        while True:
            if isinstance(frame, Done | ErrorFrame):
                ended = frame  # before the yield: a consumer that stops at Done closes us right there
            yield frame
            if ended is not None:
                return
            frame = await _next_frame(reader, peer)
    finally:
        if isinstance(ended, Done) and pool is not None:
            surplus = pool.give(str(peer), stream)
            if surplus is not None:
                await reset_stream(surplus)
        elif ended is not None:
            await close_stream(stream)
        else:
            await reset_stream(stream)
