"""The one task that reads a node's inference stream, so a reset is noticed while the node is writing.

A stream now carries several requests one after another, so nothing else may read it: a second
reader watching for resets could swallow the bytes of the next request. :class:`Inbox` reads
everything into a bounded buffer, hands bytes to a :class:`~tooti.p2p.framing.FrameReader` through
:meth:`Inbox.read`, and sets :attr:`Inbox.reset` the moment the client resets the stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from libp2p.abc import INetStream

__all__ = ["Inbox"]

READ_SIZE = 65536


def _was_reset(stream: INetStream) -> bool:
    """Whether an end of stream was really a reset.

    py-libp2p's yamux drops a stream's buffer when a RST arrives, and a read then raises
    ``StreamEOF`` ("stream closed") instead of ``StreamReset``: measured, a gateway's reset during a
    non-streamed request looked like a half-close, so the node generated the whole answer for nobody.
    The muxed stream still records the RST.
    """
    muxed = getattr(stream, "muxed_stream", None)
    return bool(getattr(muxed, "reset_received", False))


class Inbox:
    """Buffered reader of one stream.

    Args:
        stream: the libp2p stream; only :meth:`run` reads it.
        limit: stop reading while this many bytes wait unread (the client's writes then block on
            yamux flow control instead of growing our memory).
    """

    def __init__(self, stream: INetStream, *, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._buffer = bytearray()
        self._changed = trio.Event()
        self.ended = False
        """The client closed its side (no more requests will come)."""
        self.reset = trio.Event()
        """The client reset the stream or the connection broke."""

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def run(self) -> None:
        """Read until the client closes or resets the stream (run it in the stream's nursery)."""
        from libp2p.network.stream.exceptions import StreamEOF, StreamError

        try:
            while True:
                while len(self._buffer) >= self._limit:
                    await self._changed.wait()
                try:
                    data = await self._stream.read(READ_SIZE)
                except StreamEOF:
                    if _was_reset(self._stream):
                        self.reset.set()
                    break
                except StreamError:
                    self.reset.set()
                    break
                if not data:
                    break
                self._buffer += data
                self._notify()
        finally:
            self.ended = True
            self._notify()

    async def read(self, n: int | None = None) -> bytes:
        """Up to ``n`` buffered bytes, waiting for some; ``b""`` once the client closed or reset."""
        while not self._buffer:
            if self.ended:
                return b""
            await self._changed.wait()
        size = len(self._buffer) if n is None else min(n, len(self._buffer))
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        self._notify()
        return data
