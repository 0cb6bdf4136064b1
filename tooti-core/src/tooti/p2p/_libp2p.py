"""One-time process setup around importing libp2p: the private DHT protocol id and logging.

py-libp2p 0.8.1 bug 6 (numbered list in docs/p2p.md): ``KadDHT(protocol_prefix=...)`` is ignored on
the wire because modules import ``PROTOCOL_ID`` by value, so every module's copy is patched before any
``KadDHT`` exists. Bug 8 there: ``import libp2p`` clears the ``libp2p`` logger and stops propagation; we restore it so
libp2p warnings reach the application's handlers. Bug 9: yamux sends a window update after every read
(see :func:`_yamux_window_updates_like_go`). Bug 10: per-frame overhead on the write path (see
:func:`_lean_frame_writes`). Bug 11: a socket read per length prefix (see
:func:`_buffered_tcp_reads`). Re-check the module list and the patched methods when the pin moves.
"""

from __future__ import annotations

import logging
import os
from typing import Any

__all__ = ["KAD_PROTOCOL", "READ_AHEAD", "prepare_libp2p"]

KAD_PROTOCOL = "/tooti/kad/1.0.0"
_done = False


def prepare_libp2p() -> None:
    """Apply the DHT protocol patch and logger setup (idempotent; call before building a host)."""
    global _done  # noqa: PLW0603 - process-wide, once
    if _done:
        return
    import libp2p.kad_dht.common as kad_common
    import libp2p.kad_dht.kad_dht as kad_main
    import libp2p.kad_dht.peer_routing as kad_routing
    import libp2p.kad_dht.provider_store as kad_providers
    import libp2p.kad_dht.value_store as kad_values
    from libp2p.custom_types import TProtocol

    for module in (kad_common, kad_main, kad_routing, kad_providers, kad_values):
        module.PROTOCOL_ID = TProtocol(KAD_PROTOCOL)  # type: ignore[attr-defined]
    _yamux_window_updates_like_go()
    _buffered_tcp_reads()
    if not os.environ.get("LIBP2P_DEBUG"):
        _lean_frame_writes()
        logger = logging.getLogger("libp2p")
        logger.handlers.clear()
        logger.setLevel(logging.WARNING)
        logger.propagate = True
        # Routine peer churn (a peer gone, a stream refused during shutdown) is logged at WARNING or
        # ERROR by these modules with multi-line dumps; tooti reports the same failures itself
        # (BackendUnavailable and friends), so only their critical messages pass.
        for name in (
            "libp2p.kad_dht.kad_dht",
            "libp2p.host.basic_host",
            "libp2p.protocol_muxer.multiselect_client",
            "libp2p.stream_muxer.yamux.yamux",
        ):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    _done = True


def _yamux_window_updates_like_go() -> None:
    """py-libp2p bug 9 (docs/p2p.md): a yamux receiver sends one WINDOW_UPDATE per read.

    0.8.1's ``YamuxStream._auto_tune_and_send_window_update`` credits the bytes of every read back
    to the sender at once whenever any credit is outstanding (its "partial slack" branch), so a
    streamed answer read frame by frame costs the reader one more encrypted frame written per
    frame read, and the sender one more to decrypt and parse. Replaced with go-yamux's rule: credit
    is returned once the outstanding amount reaches half the window (256 KiB, growing by the same
    auto-tuning), so a sender is never held up by it and small frames cost no reply. The module
    also read its ``PY_YAMUX_*`` settings from the environment on every read; they are fixed here
    to the values they had at start.
    """
    import libp2p.stream_muxer.yamux.yamux as yamux

    divisor = yamux._yamux_batch_threshold_divisor()
    no_hysteresis = yamux._yamux_disable_hysteresis()
    yamux._yamux_batch_threshold_divisor = lambda: divisor
    yamux._yamux_disable_hysteresis = lambda: no_hysteresis
    yamux._perf_yamux_debug_enabled = lambda: False

    async def window_update(self: Any, *, bytes_read: int = 0) -> None:
        async with self.window_lock:
            buffered = len(self.conn.stream_buffers.get(self.stream_id, b""))
            if self.target_recv_window - (self.recv_window + buffered) < self._grow_threshold():
                return
            credit = self._grow_to_delta(buffered) + self._apply_autotune_epoch(buffered)
        if credit > 0:
            await self.send_window_update(credit, skip_lock=True)

    yamux.YamuxStream._auto_tune_and_send_window_update = window_update  # type: ignore[method-assign]


def _lean_frame_writes() -> None:
    """py-libp2p bug 10 (docs/p2p.md): every frame written pays for bookkeeping it does not need.

    0.8.1's ``YamuxStream.write`` takes a read-write lock and the window lock (two trio schedule
    points) and formats a debug message before every frame; ``Yamux._write_frame`` then decodes
    the frame's header again to format another debug message, and takes one more schedule point
    after the write. With debug logging off (``LIBP2P_DEBUG`` unset) a write that fits the send
    window and one yamux frame now checks and charges the window without awaiting (trio runs one
    task at a time, so nothing can interleave there) and writes under the connection's write lock
    alone, which keeps frames whole and in order; any other write (window exhausted, larger than a
    frame, stream closing) takes the library's own path.
    """
    import struct

    import libp2p.stream_muxer.yamux.yamux as yamux

    original_write = yamux.YamuxStream.write
    header = struct.Struct(yamux.YAMUX_HEADER_FORMAT)
    max_payload = yamux.MAX_MESSAGE_SIZE - yamux.HEADER_SIZE
    data_type = yamux.TYPE_DATA

    async def write(self: Any, data: bytes) -> None:
        size = len(data)
        if 0 < size <= self.send_window and size <= max_payload and not (self.send_closed or self.closed):
            self.send_window -= size
            await self.conn._write_frame(header.pack(0, data_type, 0, self.stream_id, size) + data)
            return
        await original_write(self, data)

    async def write_frame(self: Any, data: bytes) -> None:
        async with self._write_lock:  # its acquisition is the schedule point
            await self.secured_conn.write(data)

    yamux.YamuxStream.write = write  # type: ignore[method-assign]
    yamux.Yamux._write_frame = write_frame  # type: ignore[method-assign]


READ_AHEAD = 64 * 1024
"""Bytes asked of the socket per read: a Noise message and its length prefix, often several."""


def _buffered_tcp_reads() -> None:
    """py-libp2p bug 11 (docs/p2p.md): every read goes to the socket for exactly what it needs.

    0.8.1's ``TrioTCPStream.read(n)`` takes a lock and calls ``receive_some(n)``, so a Noise message
    costs one socket read (a lock, a trio wait) for its 2-byte length prefix and another for its
    body, and messages that arrived together are still read piece by piece. Reads now ask the
    socket for up to :data:`READ_AHEAD` bytes and later reads take what is left, without the lock
    or an await while bytes are in hand and no read is in flight (trio runs one task at a time, so
    nothing interleaves with taking them). Measured between two processes, 100-byte messages 1 ms
    apart: reader CPU 133-140 -> 124-125 us per message. Errors are the library's: a reset raises
    ``ConnectionClosedError``, a locally closed socket reads as EOF (after the bytes in hand).
    """
    import trio
    from libp2p.io.exceptions import ConnectionClosedError
    from libp2p.io.trio import TrioTCPStream

    def take(held: bytearray, n: int | None) -> bytes:
        if n is None or n >= len(held):
            out = bytes(held)
            held.clear()
        else:
            out = bytes(held[:n])
            del held[:n]
        return out

    async def read(self: Any, n: int | None = None) -> bytes:
        if n == 0:
            return b""
        held: bytearray | None = self.__dict__.get("_tooti_read_ahead")
        if held is None:
            held = self._tooti_read_ahead = bytearray()
        if held and not self.read_lock.locked():
            return take(held, n)
        async with self.read_lock:
            if held:
                return take(held, n)
            try:
                data: bytes = await self.stream.receive_some(READ_AHEAD)
            except trio.BrokenResourceError as error:
                raise ConnectionClosedError(f"TCP connection reset by remote peer: {error}", transport="tcp") from error
            except trio.ClosedResourceError:
                return b""  # closed here: EOF for the reader, as the library does
            if n is not None and len(data) > n:
                held += memoryview(data)[n:]
                return data[:n]
            return data

    TrioTCPStream.read = read  # type: ignore[method-assign]
