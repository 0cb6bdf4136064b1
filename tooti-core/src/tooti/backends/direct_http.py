"""HTTP/1.1 to a model server beside the node, parsed by httptools (llhttp) on the event loop's sockets.

Why not httpx here: a node relays every token of a streamed answer, and through httpx each token
read passes httpx's response layers, httpcore's connection pool, an exception map and a timer
context, then h11's pure-Python parser. Measured under 16 concurrent streams (32 tokens 2 ms apart,
2-core dev VM), that read path was about 40 % of the node's CPU; h11 straight on the socket still
left its parser at 15 %. httptools is the C binding of llhttp (Node.js's HTTP parser) that uvicorn
uses for its fast protocol, so parsing, chunked decoding and keep-alive rules come from well-kept,
widely deployed code; this module only writes the request line and headers it controls and keeps
connections.

:class:`DirectHttpClient` serves plain ``http://`` servers at an address (``127.0.0.1``,
``localhost``, a LAN IP) when no proxy applies (see :func:`direct_url`), which is how a model
server runs beside its node. TLS, proxies and host names stay on httpx
(:class:`~tooti.backends.http.HttpTransport` decides). Failures are raised as httpx's exception
types, so one mapping turns either into tooti's errors. Connections are kept alive and reused; an
answer left unread (the consumer stopped, the client went away) closes its connection, which is
how the model server learns to stop generating.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import httptools
import httpx

if TYPE_CHECKING:
    from anyio.abc import SocketStream

__all__ = ["DirectAnswer", "DirectHttpClient", "direct_url"]

_READ_BYTES = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
"""Largest response head (status line and headers) accepted from a model server."""
_DISCONNECTED = "Server disconnected without sending a response."
"""httpx's words for a request that got no byte of answer (a kept connection closed under it)."""
_PATH_SAFE = "/?&=%:@!$'()*+,;~-._"
"""Characters a request path may carry as they are (RFC 3986 reserved and unreserved marks)."""
_SAFE_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def direct_url(url: httpx.URL) -> bool:
    """Whether ``url`` is one :class:`DirectHttpClient` serves: plain HTTP to an address, no proxy in the way.

    An address is an IP literal or ``localhost``; a host name may need what httpx does about it
    (proxy rules by name, for one). A proxy configured in the environment for plain HTTP that the
    host does not bypass sends the request through httpx, which honours it.
    """
    if url.scheme != "http":
        return False
    host = url.host
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
    proxies = urllib.request.getproxies()
    return not (proxies.get("http") or proxies.get("all")) or bool(urllib.request.proxy_bypass(host))


class _Connection:
    """One kept-alive connection."""

    __slots__ = ("stream",)

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream

    def closed_by_peer(self) -> bool:
        """Whether the server closed (or wrote to) this idle connection since its last answer.

        Reliable on trio, where nothing reads an idle socket; on asyncio the transport may have
        consumed the close already, and the resend in :meth:`DirectHttpClient.open` covers that case.
        """
        sock: object = self.stream.extra(anyio.abc.SocketAttribute.raw_socket)  # noqa: S610 - anyio, not Django
        if not isinstance(sock, socket.socket):
            return False  # asyncio hands out a wrapper without recv: its transport owns the reading
        try:
            sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)  # data or b"" (closed): unusable either way
        except BlockingIOError:
            return False
        except OSError:
            pass
        return True

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()


class _NoAnswer(Exception):
    """The connection ended before a single byte of an answer (the server never took the request)."""


class _Message:
    """httptools' callbacks for one response: headers, body pieces not yet handed out, completion."""

    __slots__ = ("body", "complete", "head_done", "headers", "informational", "keep_alive", "parser")

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.informational = False
        self.body: list[bytes] = []
        self.complete = False
        self.keep_alive = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        # A 1xx answer comes before the real one and is skipped (RFC 9110, 15.2); llhttp then
        # parses the next answer on the same connection.
        self.informational = self.parser.get_status_code() < 200
        if self.informational:
            self.headers = []
        else:
            self.head_done = True

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if self.informational:
            return
        self.complete = True
        self.keep_alive = self.parser.should_keep_alive()  # llhttp forgets it once the message is done


class DirectHttpClient:
    """Keep-alive HTTP/1.1 requests to one plain-HTTP model server (see the module docstring).

    Args:
        base_url: the server's root URL; :func:`direct_url` must hold for it.
        headers: sent with every request (``Authorization``).
        connect_timeout: seconds to open a connection.
        timeout: the longest silence, in seconds, while writing a request or reading an answer.
        max_idle: connections kept open between requests.
    """

    def __init__(
        self,
        base_url: httpx.URL,
        *,
        headers: dict[str, str],
        connect_timeout: float,
        timeout: float,
        max_idle: int = 32,
    ) -> None:
        self.host = base_url.host
        self.port = base_url.port or 80
        self.prefix = base_url.raw_path.rstrip(b"/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [f"host: {host}:{self.port}", "accept: */*", "accept-encoding: identity", "user-agent: tooti"]
        lines += [f"{_token(k)}: {_value(v)}" for k, v in headers.items()]
        self._head_tail = ("\r\n".join(lines) + "\r\n").encode("latin-1")
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self.opened = 0
        """Connections opened so far (tests: reuse shows as fewer opens than requests)."""
        self.resent = 0
        """Requests sent a second time after a connection ended before any byte of answer."""

    async def open(
        self, method: str, path: str, body: bytes = b"", content_type: bytes = b"application/json"
    ) -> DirectAnswer:
        """Send a request and read the answer's head; the body is read from the returned :class:`DirectAnswer`.

        A request whose connection ends before any byte of answer is sent once more, on a new
        connection: a server that closes a kept connection just as the request arrives never saw it.
        """
        # As httpx does: characters outside a URL's set (spaces, non-ASCII) are percent-encoded.
        target = self.prefix + urllib.parse.quote(path, safe=_PATH_SAFE).encode("ascii")
        if not target.startswith(b"/"):
            raise httpx.UnsupportedProtocol(f"not a request path: {path!r}")
        request = b"%s %s HTTP/1.1\r\n%scontent-length: %d\r\n" % (
            method.encode("ascii"),
            target,
            self._head_tail,
            len(body),
        )
        if body:
            request += b"content-type: " + content_type + b"\r\n"
        request += b"\r\n" + body
        try:
            return await self._attempt(request)
        except _NoAnswer:
            self.resent += 1
        try:
            return await self._attempt(request, fresh=True)
        except _NoAnswer:
            raise httpx.RemoteProtocolError(_DISCONNECTED) from None

    async def aclose(self) -> None:
        """Close the kept connections. Safe to call twice."""
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.aclose()

    async def _attempt(self, request: bytes, *, fresh: bool = False) -> DirectAnswer:
        conn = None if fresh else await self._kept()
        if conn is None:
            conn = await self._connect()
        answer = DirectAnswer(self, conn)
        try:
            await answer.start(conn, request)
        except BaseException:
            await answer.aclose()
            raise
        return answer

    async def _kept(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed_by_peer():
                return conn
            await conn.aclose()
        return None

    async def _connect(self) -> _Connection:
        where = f"{self.host}:{self.port}"
        try:
            with anyio.fail_after(self.connect_timeout):
                stream = await anyio.connect_tcp(self.host, self.port)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(f"connecting to {where} timed out") from exc
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {where}: {exc}") from exc
        self.opened += 1
        return _Connection(stream)

    async def _keep(self, conn: _Connection) -> None:
        if len(self._idle) < self.max_idle:
            self._idle.append(conn)
        else:
            await conn.aclose()


class DirectAnswer:
    """A response: status and headers read, the body iterated piece by piece (``async for``).

    Not an async generator on purpose: a consumer that stops early leaves nothing suspended for
    the garbage collector to finalize. :meth:`aclose` ends it: a body read to its end has already
    given its connection back for reuse, any other is closed.
    """

    __slots__ = ("_client", "_conn", "_message", "status_code")

    def __init__(self, client: DirectHttpClient, conn: _Connection) -> None:
        self._client = client
        self._conn: _Connection | None = conn
        self._message = _Message()
        self.status_code = 0

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The response headers, names in lower case."""
        return self._message.headers

    def header(self, name: bytes) -> str | None:
        """The first value of header ``name`` (lower case), or ``None``."""
        for key, value in self._message.headers:
            if key == name:
                return value.decode("latin-1")
        return None

    async def start(self, conn: _Connection, request: bytes) -> None:
        """Write the request on this answer's connection, read the response head."""
        with anyio.CancelScope(deadline=anyio.current_time() + self._client.timeout) as scope:
            try:
                await conn.stream.send(request)
            except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError):
                raise _NoAnswer from None
        if scope.cancelled_caught:
            raise httpx.WriteTimeout("writing the request to the model server timed out")
        message = self._message
        received = 0
        while not message.head_done:
            if received > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError(f"the model server's response head exceeds {MAX_HEAD_BYTES} bytes")
            try:
                data = await _receive(conn, self._client.timeout)
            except httpx.ReadError:
                if received:
                    raise
                raise _NoAnswer from None
            if not data:
                if received:
                    raise httpx.RemoteProtocolError("the model server closed the connection inside a response head")
                raise _NoAnswer
            received += len(data)
            self._feed(data)
        self.status_code = self._message.parser.get_status_code()

    def _feed(self, data: bytes) -> None:
        try:
            self._message.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            raise httpx.RemoteProtocolError("the model server switched protocols") from exc
        except httptools.HttpParserError as exc:
            raise httpx.RemoteProtocolError(f"the model server broke HTTP/1.1: {exc}") from exc

    def __aiter__(self) -> DirectAnswer:
        return self

    async def __anext__(self) -> bytes:
        message = self._message
        while True:
            if message.body:
                pieces = message.body
                message.body = []
                return pieces[0] if len(pieces) == 1 else b"".join(pieces)
            conn = self._conn
            if message.complete:
                if conn is not None:
                    self._conn = None
                    if message.keep_alive:
                        await self._client._keep(conn)
                    else:
                        await conn.aclose()
                raise StopAsyncIteration
            if conn is None:
                raise StopAsyncIteration
            data = await _receive(conn, self._client.timeout)
            if not data:
                await self._ended_by_close()
            else:
                self._feed(data)

    async def _ended_by_close(self) -> None:
        """The server closed the connection: the end of a body that runs until close, else a cut."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()
        if self.header(b"content-length") is None and self.header(b"transfer-encoding") is None:
            self._message.complete = True  # a body delimited by the connection's end
            return
        raise httpx.RemoteProtocolError("the model server closed the connection before the answer's end")

    async def aclose(self) -> None:
        """Close the connection unless the body was read to its end (then it was already kept)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.aclose()


async def _receive(conn: _Connection, timeout: float) -> bytes:
    """The next bytes from the server; ``b""`` at its end of stream."""
    with anyio.CancelScope(deadline=anyio.current_time() + timeout) as scope:
        try:
            return await conn.stream.receive(_READ_BYTES)
        except anyio.EndOfStream:
            return b""
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise httpx.ReadError(f"reading from the model server failed: {exc}") from exc
    if scope.cancelled_caught:
        raise httpx.ReadTimeout("no data from the model server within the read timeout")
    raise httpx.ReadError("reading from the model server was cancelled")  # pragma: no cover - not reached


def _token(name: str) -> str:
    if not name or not set(name.encode("latin-1", "replace")) <= _SAFE_TOKEN:
        raise ValueError(f"not a valid HTTP header name: {name!r}")
    return name.lower()


def _value(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise ValueError("an HTTP header value holds a line break")
    return value
