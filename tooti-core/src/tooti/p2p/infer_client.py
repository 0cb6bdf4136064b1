"""The gateway side of ``/tooti/infer/1.0.0`` (trio): send one request, yield the node's frames.

The stream is opened and closed through :mod:`tooti.p2p.safestream`; closing the generator early
(or cancelling its consumer) resets the stream, which the node turns into closing the backend
request. Consume it under :func:`contextlib.aclosing` so that happens promptly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.errors import BackendUnavailable, MalformedResponse
from tooti.p2p.framing import (
    MAX_REQUEST_FRAME,
    MAX_RESPONSE_FRAME,
    EndOfStream,
    FrameError,
    FrameReader,
    decode_response,
    encode_frame,
)
from tooti.p2p.safestream import OPEN_TIMEOUT, close_stream, open_stream, reset_stream, send_and_half_close
from tooti.wire.infer import PROTOCOL_ID, Done, ErrorFrame

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from libp2p.abc import IHost
    from libp2p.peer.id import ID

    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["request_frames"]


async def request_frames(
    host: IHost, peer: ID, request: InferRequest, *, open_timeout: float = OPEN_TIMEOUT
) -> AsyncGenerator[ResponseFrame, None]:
    """Send ``request`` to ``peer`` and yield response frames up to and including Done or ErrorFrame.

    Raises:
        BackendUnavailable: the stream could not be opened (in time) or broke mid-answer.
        MalformedResponse: a frame was invalid or the stream ended without Done.
    """
    from libp2p.network.stream.exceptions import StreamEOF, StreamError

    stream = await open_stream(host, peer, PROTOCOL_ID, open_timeout)
    finished = False
    try:
        await send_and_half_close(stream, encode_frame(request, limit=MAX_REQUEST_FRAME))
        reader = FrameReader(stream, limit=MAX_RESPONSE_FRAME, eof_types=(StreamEOF,))
        while True:
            try:
                frame = decode_response(await reader.read_payload())
            except EndOfStream:
                raise MalformedResponse(f"stream from {peer} ended without done") from None
            except FrameError as exc:
                raise MalformedResponse(f"bad frame from {peer}: {exc}") from None
            except StreamError as exc:
                raise BackendUnavailable(f"stream from {peer} broke: {type(exc).__name__}") from None
            yield frame
            if isinstance(frame, Done | ErrorFrame):
                finished = True
                return
    finally:
        if finished:
            await close_stream(stream)
        else:
            await reset_stream(stream)
