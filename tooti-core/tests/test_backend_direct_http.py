"""The node's direct HTTP/1.1 client against real servers on loopback that misbehave on purpose.

Every server here is a real TCP listener speaking (or breaking) HTTP/1.1 byte by byte, and every
request goes through :class:`HttpTransport`, the way backends use it, on trio (the node's loop)
and on asyncio. The client must give the same tooti errors httpx gave, keep connections alive
only when that is safe, and close a connection whose answer nobody reads (how a model server
learns to stop generating).
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import httpx
import pytest

from tooti.backends.direct_http import MAX_HEAD_BYTES, direct_url
from tooti.backends.http import HttpTransport
from tooti.backends.protocol import BackendSettings
from tooti.errors import BackendOverloaded, BackendTimeout, BackendUnavailable, MalformedResponse, ModelNotFound

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["trio", "asyncio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Server:
    """Counts connections and requests; each connection runs ``handler`` (which reads with :meth:`request`)."""

    def __init__(self, handler: Callable[[anyio.abc.SocketStream, Server], Awaitable[None]]) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.client_left = anyio.Event()
        self._buffers: dict[int, bytes] = {}

    async def request(self, stream: anyio.abc.SocketStream) -> bytes | None:
        """The next request's head and body, or ``None`` when the client closed the connection."""
        buf = self._buffers.pop(id(stream), b"")
        while b"\r\n\r\n" not in buf:
            try:
                buf += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return None
        head, _, rest = buf.partition(b"\r\n\r\n")
        length = next(
            (int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")), 0
        )
        while len(rest) < length:
            rest += await stream.receive()
        self._buffers[id(stream)] = rest[length:]
        self.requests.append(head + b"\r\n\r\n" + rest[:length])
        return head

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        async with stream:
            try:
                await self.handler(stream, self)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, ConnectionError):
                self.client_left.set()


@asynccontextmanager
async def serving(
    handler: Callable[[anyio.abc.SocketStream, Server], Awaitable[None]],
) -> AsyncIterator[tuple[str, Server]]:
    server = Server(handler)
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener, anyio.create_task_group() as tg:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
        tg.start_soon(listener.serve, server._serve)
        try:
            yield f"http://127.0.0.1:{port}", server
        finally:
            tg.cancel_scope.cancel()


@asynccontextmanager
async def transport(url: str, **settings: float) -> AsyncIterator[HttpTransport]:
    settings.setdefault("request_timeout_sec", 10)  # a bug here fails in seconds, not after the default 300
    http = HttpTransport(BackendSettings(base_url=url, api_key="sk-test", **settings), server="test server")
    assert http._direct is not None, "a loopback address must take the direct path"
    try:
        yield http
    finally:
        await http.aclose()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


async def read_all(http: HttpTransport, payload: dict[str, object]) -> bytes:
    async with http.stream_body("POST", "/v1/chat/completions", json=payload) as body:
        return b"".join([piece async for piece in body])


async def read_whole(http: HttpTransport, payload: dict[str, object]) -> bytes:
    return await http.request_bytes("POST", "/v1/chat/completions", json=payload)


async def test_streamed_pieces_arrive_in_order_on_one_kept_connection() -> None:
    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        while await server.request(stream) is not None:
            await stream.send(SSE_HEAD)
            for i in range(3):
                await stream.send(chunk(b"data: %d\n\n" % i))
                await anyio.sleep(0.01)
            await stream.send(b"0\r\n\r\n")

    async with serving(handler) as (url, server), transport(url) as http:
        first = await read_all(http, {"n": 1})
        second = await read_all(http, {"n": 2})
    assert first == second == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert server.connections == 1
    request = server.requests[1].lower()
    assert b"post /v1/chat/completions http/1.1" in request
    assert b"authorization: bearer sk-test" in request
    assert json.loads(server.requests[1].partition(b"\r\n\r\n")[2]) == {"n": 2}


async def test_an_answer_left_unread_closes_its_connection_so_the_server_stops_generating() -> None:
    written: list[int] = []

    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        await server.request(stream)
        if server.connections > 1:
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            return
        await stream.send(SSE_HEAD)
        for i in range(1000):  # far more than the client wants; stops when the client has gone
            await stream.send(chunk(b"data: %d\n\n" % i))
            written.append(i)
            await anyio.sleep(0.005)

    async with serving(handler) as (url, server), transport(url) as http:
        async with http.stream_body("POST", "/v1/chat/completions", json={}) as body:
            async for _ in body:
                break  # the consumer stops after the first piece
        with anyio.fail_after(5):
            await server.client_left.wait()
        assert len(written) < 1000
        assert await http.request_json("GET", "/v1/models") == {}
    assert server.connections == 2  # the unread answer's connection was not reused


@pytest.mark.parametrize(
    ("reply", "read"),
    [
        pytest.param(SSE_HEAD + chunk(b"data: 0\n\n") + b"40\r\npartial", read_all, id="body cut mid-way"),
        pytest.param(b'HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{"choices":', read_whole, id="short body"),
        pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n\r\n", read_all, id="not HTTP"),
    ],
)
async def test_an_answer_that_ends_broken_is_malformed_never_a_short_answer(
    reply: bytes, read: Callable[[HttpTransport, dict[str, object]], Awaitable[bytes]]
) -> None:
    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        await server.request(stream)
        await stream.send(reply)  # and the connection ends here

    async with serving(handler) as (url, _), transport(url) as http:
        with pytest.raises(MalformedResponse, match="cut or corrupt"):
            await read(http, {})


async def test_a_response_head_beyond_the_cap_is_refused() -> None:
    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        await server.request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\n")
        for i in range(MAX_HEAD_BYTES // 1000 + 2):
            await stream.send(b"x-filler-%d: %s\r\n" % (i, b"a" * 1000))

    async with serving(handler) as (url, _), transport(url) as http:
        with pytest.raises(MalformedResponse, match="head exceeds"):
            await read_all(http, {})


async def test_silence_past_the_request_timeout_is_a_backend_timeout() -> None:
    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        await server.request(stream)
        await stream.send(SSE_HEAD + chunk(b"data: 0\n\n"))
        await anyio.sleep(30)

    async with serving(handler) as (url, _), transport(url, request_timeout_sec=0.3) as http:
        with anyio.fail_after(10), pytest.raises(BackendTimeout):
            await read_all(http, {})


async def test_error_statuses_map_to_the_same_errors_as_through_httpx() -> None:
    answers = [
        (404, {"error": {"message": "model 'x' not found", "code": "model_not_found"}}),
        (503, {"error": {"message": "server busy, queue full"}}),
    ]

    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        for status, payload in answers:
            await server.request(stream)
            body = json.dumps(payload).encode()
            await stream.send(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n\r\n%s" % (status, len(body), body))

    async with serving(handler) as (url, server), transport(url) as http:
        with pytest.raises(ModelNotFound, match="not found"):
            await read_all(http, {})
        with pytest.raises(BackendOverloaded):
            await http.request_json("POST", "/v1/chat/completions", json={})
    assert server.connections == 1  # an error answer read to its end keeps the connection


async def test_a_connection_the_server_will_close_is_never_reused() -> None:
    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        await server.request(stream)
        await stream.send(b'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 12\r\n\r\n{"ok": true}')
        await anyio.sleep(2)  # lingers without reading: a request sent here would go unanswered

    async with serving(handler) as (url, server), transport(url) as http:
        assert await http.request_json("GET", "/v1/models") == {"ok": True}
        assert await http.request_json("GET", "/v1/models") == {"ok": True}
        assert http.resent == 0  # not sent on the closing connection first
    assert server.connections == 2


async def test_a_body_ended_by_the_connection_close_is_whole() -> None:
    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        await server.request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-type: application/json\r\n\r\n")
        await stream.send(b'{"ok": ')
        await anyio.sleep(0.02)
        await stream.send(b"true}")

    async with serving(handler) as (url, server), transport(url) as http:
        assert await http.request_json("GET", "/v1/models") == {"ok": True}
        assert await http.request_json("GET", "/v1/models") == {"ok": True}
    assert server.connections == 2


async def test_informational_answers_before_the_real_one_are_skipped() -> None:
    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        await server.request(stream)  # in the same write as the real answer
        await stream.send(b'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{"n": 1}')
        await server.request(stream)  # alone, then the real answer
        await stream.send(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n")
        await anyio.sleep(0.05)
        await stream.send(b'HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\n{"n": 2}')

    async with serving(handler) as (url, server), transport(url) as http:
        assert await http.request_json("GET", "/v1/models") == {"n": 1}
        assert await http.request_json("GET", "/v1/models") == {"n": 2}
    assert server.connections == 1


async def test_nobody_listening_is_unavailable() -> None:
    async with await anyio.create_tcp_listener(local_host="127.0.0.1") as listener:
        port = listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610 - anyio, not Django
    async with transport(f"http://127.0.0.1:{port}") as http:
        with pytest.raises(BackendUnavailable, match="unreachable"):
            await http.request_json("GET", "/v1/models")


def test_only_plain_http_to_an_address_without_a_proxy_goes_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert direct_url(httpx.URL("http://127.0.0.1:8080"))
    assert direct_url(httpx.URL("http://localhost:11434"))
    assert direct_url(httpx.URL("http://[::1]:8000/v1"))
    assert not direct_url(httpx.URL("https://127.0.0.1:8080"))
    assert not direct_url(httpx.URL("http://llama.test:8080"))  # a name: httpx (and its proxy rules)
    monkeypatch.setenv("HTTP_PROXY", "http://10.9.9.9:3128")
    assert not direct_url(httpx.URL("http://10.0.0.5:8000"))  # the operator's proxy is honoured by httpx
    monkeypatch.setenv("NO_PROXY", "10.0.0.5")
    assert direct_url(httpx.URL("http://10.0.0.5:8000"))
    respx_like = HttpTransport(
        BackendSettings(base_url="http://127.0.0.1:1"),
        server="x",
        transport=httpx.MockTransport(lambda r: httpx.Response(200)),
    )
    assert respx_like._direct is None  # a transport given for tests is always used


def test_a_header_value_with_a_line_break_is_refused_before_any_request() -> None:
    with pytest.raises(ValueError, match="line break"):
        HttpTransport(BackendSettings(base_url="http://127.0.0.1:1", api_key="sk\r\nx-injected: 1"), server="x")


async def test_a_path_outside_the_url_character_set_is_percent_encoded_as_httpx_would() -> None:
    async def handler(stream: anyio.abc.SocketStream, server: Server) -> None:
        await server.request(stream)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")

    async with serving(handler) as (url, server), transport(url + "/base") as http:
        assert await http.request_json("GET", "/my models/é?x=1&y=a%20b") == {}
    assert server.requests[0].startswith(b"GET /base/my%20models/%C3%A9?x=1&y=a%20b HTTP/1.1\r\n")
