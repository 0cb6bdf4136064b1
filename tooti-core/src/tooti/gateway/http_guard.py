"""Read timeouts and a chunk-size check for the gateway's HTTP/1.1 connections (uvicorn, h11).

uvicorn bounds only the idle time *between* requests (``timeout_keep_alive``), and any byte that
arrives cancels even that: a client that trickles a header line every second (slowloris), or a
body one byte at a time, holds its connection and task forever, and a chunk header announcing
an exabyte leaves the request waiting for data that never comes. uvicorn has no option for any of
this (its httptools protocol neither), so :func:`guarded_h11_protocol` builds a subclass of its
h11 protocol that adds:

- a **head timeout**: the request line and headers must be complete within ``head_timeout_s`` of
  the connection opening or of the previous response ending, however slowly bytes trickle in;
- a **body timeout**: the whole request body must arrive within ``body_timeout_s`` of its headers;
- a **chunk-size limit**: a chunk header announcing more than ``max_body_bytes`` closes the
  connection at once.

A connection that breaks a limit is closed; the app sees ``http.disconnect`` like any client that
went away. Pipelined requests are served in order by uvicorn's own h11 cycle (checked in tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

if TYPE_CHECKING:
    import asyncio

__all__ = ["guarded_h11_protocol"]


class _GuardedH11Protocol(H11Protocol):
    head_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_body_bytes: int = 4 * 1024 * 1024

    _guard_timer: asyncio.TimerHandle | None = None
    _guarding: str = ""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm("head", self.head_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self._follow_state()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow_state()

    # -- internals ---------------------------------------------------------------------------------

    def _follow_state(self) -> None:
        """Arm the timer that matches what the connection waits for from the client."""
        if self.transport.is_closing():
            self._disarm()
            return
        state = self.conn.their_state
        if state is h11.IDLE:
            if self._guarding != "head":
                self._arm("head", self.head_timeout_s)
        elif state is h11.SEND_BODY:
            if self._guarding != "body":
                self._arm("body", self.body_timeout_s)
            if _announced_chunk(self.conn) > self.max_body_bytes:
                self.logger.debug("closing a connection whose chunk size exceeds %d bytes", self.max_body_bytes)
                self._disarm()
                self.transport.close()
        else:
            self._disarm()

    def _arm(self, what: str, seconds: float) -> None:
        self._disarm()
        self._guarding = what
        self._guard_timer = self.loop.call_later(seconds, self._expired, what)

    def _disarm(self) -> None:
        if self._guard_timer is not None:
            self._guard_timer.cancel()
        self._guard_timer = None
        self._guarding = ""

    def _expired(self, what: str) -> None:
        self._guard_timer = None
        self._guarding = ""
        if not self.transport.is_closing():
            self.logger.debug("closing a connection: the request %s did not arrive in time", what)
            self.transport.close()


def _announced_chunk(conn: h11.Connection) -> int:
    """Bytes the current chunk header announced (0 when not reading a chunked body).

    h11 accepts up to 20 hex digits and exposes the count only on its reader; read defensively so a
    different h11 version degrades to "no check" instead of failing.
    """
    reader: Any = getattr(conn, "_reader", None)
    remaining = getattr(reader, "_bytes_in_chunk", 0)
    return remaining if isinstance(remaining, int) else 0


def guarded_h11_protocol(*, head_timeout_s: float, body_timeout_s: float, max_body_bytes: int) -> type[H11Protocol]:
    """Uvicorn's h11 protocol with the limits above; pass it as ``uvicorn.Config(http=...)``."""
    return type(
        "GuardedH11Protocol",
        (_GuardedH11Protocol,),
        {"head_timeout_s": head_timeout_s, "body_timeout_s": body_timeout_s, "max_body_bytes": max_body_bytes},
    )
