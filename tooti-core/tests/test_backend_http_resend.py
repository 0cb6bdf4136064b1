"""The node's HTTP client sends a request again, once, when a kept connection drops before answering.

The server here is real (asyncio TCP on loopback) and behaves like a model server whose keep-alive
timer closes an idle connection just as the next request arrives: it answers the first request of
each connection with ``Connection: keep-alive`` and closes the connection, without a byte, on the
second. httpx then raises "Server disconnected without sending a response".
"""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager

import pytest

from tooti.backends.http import HttpTransport
from tooti.backends.protocol import BackendSettings
from tooti.errors import MalformedResponse

pytestmark = pytest.mark.anyio


class ClosingKeepAliveServer:
    """Answers one request per connection, then drops the connection when the next one arrives."""

    def __init__(self, *, drop_every_request: bool = False) -> None:
        self.connections = 0
        self.requests = 0
        self.drop_every_request = drop_every_request

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        answered = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.lower().split(b"\r\n")
                length = next((int(line.split(b":")[1]) for line in lines if line.startswith(b"content-length")), 0)
                await reader.readexactly(length)
                if answered or self.drop_every_request:
                    return  # the idle-timeout race: the request arrived, the connection goes, no answer
                self.requests += 1
                body = json.dumps({"ok": True, "n": self.requests}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: keep-alive\r\n"
                    + f"content-length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                answered += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    @asynccontextmanager
    async def running(self):
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.close()
            await server.wait_closed()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_kept_connection_dropped_before_any_byte_is_retried_once_on_a_new_one() -> None:
    upstream = ClosingKeepAliveServer()
    async with upstream.running() as url:
        http = HttpTransport(BackendSettings(base_url=url), server="test server")
        try:
            first = await http.request_json("POST", "/v1/chat/completions", json={"a": 1})
            second = await http.request_json("POST", "/v1/chat/completions", json={"a": 2})
        finally:
            await http.aclose()
    assert (first["n"], second["n"]) == (1, 2)
    assert upstream.connections == 2  # the second request went again, on a fresh connection
    assert http.resent == 1


async def test_a_server_that_drops_every_request_fails_after_one_resend() -> None:
    upstream = ClosingKeepAliveServer(drop_every_request=True)
    async with upstream.running() as url:
        http = HttpTransport(BackendSettings(base_url=url), server="test server")
        try:
            with pytest.raises(MalformedResponse):
                await http.request_json("POST", "/v1/chat/completions", json={})
        finally:
            await http.aclose()
    assert upstream.connections == 2  # one send and exactly one resend, never a loop
