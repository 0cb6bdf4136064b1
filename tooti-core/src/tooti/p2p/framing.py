"""Length-prefixed msgpack frames on a libp2p stream.

Wire format: a 4-byte big-endian unsigned length, then that many bytes of msgpack (msgspec's
encoding of the :mod:`tooti.wire.infer` tagged structs; the tag is the ``t`` key). A length above the
reader's cap is rejected before any payload is read, so a peer cannot make us buffer more than the
cap. This module does not import libp2p: it works on any object with ``async read(n) -> bytes``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Protocol, TypeVar

import msgspec

from tooti.wire.infer import InferRequest, ResponseFrame

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = [
    "MAX_REQUEST_FRAME",
    "MAX_RESPONSE_FRAME",
    "FrameError",
    "FrameReader",
    "FrameTooLarge",
    "decode_request",
    "decode_response",
    "encode_frame",
]

MAX_REQUEST_FRAME = 4 * 1024 * 1024
MAX_RESPONSE_FRAME = 1024 * 1024
_HEADER = struct.Struct(">I")

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()
_request_decoder = msgspec.msgpack.Decoder(InferRequest)
_response_decoder: msgspec.msgpack.Decoder[ResponseFrame] = msgspec.msgpack.Decoder(ResponseFrame)


class FrameError(Exception):
    """A frame could not be read: malformed, truncated or too large. The stream must be reset."""


class FrameTooLarge(FrameError):
    """A frame's announced length exceeds the cap."""


class EndOfStream(FrameError):
    """The stream ended cleanly between frames."""


class _Readable(Protocol):
    def read(self, n: int | None = None) -> Awaitable[bytes]: ...


def encode_frame(frame: msgspec.Struct, *, limit: int) -> bytes:
    """Encode ``frame`` with its length prefix; raise :class:`FrameTooLarge` above ``limit`` bytes."""
    payload = _encoder.encode(frame)
    if len(payload) > limit:
        raise FrameTooLarge(f"frame of {len(payload)} bytes exceeds {limit}")
    return _HEADER.pack(len(payload)) + payload


def decode_request(payload: bytes) -> InferRequest:
    """Decode a request frame's payload."""
    try:
        return _request_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise FrameError(f"malformed request frame: {exc}") from None


def decode_response(payload: bytes) -> ResponseFrame:
    """Decode a response frame's payload."""
    try:
        return _response_decoder.decode(payload)
    except msgspec.DecodeError as exc:
        raise FrameError(f"malformed response frame: {exc}") from None


class FrameReader:
    """Reads length-prefixed payloads from a stream, buffering partial reads.

    ``eof_types`` are the exceptions the stream raises at end of data (libp2p raises ``StreamEOF``
    instead of returning ``b""``); both forms are handled.
    """

    def __init__(self, stream: _Readable, *, limit: int, eof_types: tuple[type[BaseException], ...] = ()) -> None:
        self._stream = stream
        self._limit = limit
        self._eof_types = eof_types
        self._buffer = bytearray()
        self._read: Callable[[int | None], Awaitable[bytes]] = stream.read

    async def _fill(self, n: int) -> bool:
        """Read until ``n`` bytes are buffered; ``False`` at end of stream."""
        while len(self._buffer) < n:
            try:
                chunk = await self._read(max(n - len(self._buffer), 65536))
            except self._eof_types:
                return False
            if not chunk:
                return False
            self._buffer += chunk
        return True

    async def read_payload(self) -> bytes:
        """Return the next frame's payload; :class:`EndOfStream` at a clean end between frames."""
        if not await self._fill(_HEADER.size):
            if self._buffer:
                raise FrameError("stream ended inside a frame header")
            raise EndOfStream("end of stream")
        (length,) = _HEADER.unpack_from(self._buffer)
        if length > self._limit:
            raise FrameTooLarge(f"frame of {length} bytes exceeds {self._limit}")
        if not await self._fill(_HEADER.size + length):
            raise FrameError("stream ended inside a frame")
        payload = bytes(self._buffer[_HEADER.size : _HEADER.size + length])
        del self._buffer[: _HEADER.size + length]
        return payload
