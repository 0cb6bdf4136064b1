"""One pooled async HTTP client per backend, with tooti's timeouts, size caps and error mapping.

:class:`HttpTransport` is what backend plugins build on: every method returns decoded data or
raises a :class:`~tooti.errors.BackendError` subclass, never an ``httpx`` exception, so callers
never see a transport detail and the gateway can decide by type whether to fail over.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager, contextmanager, suppress
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import msgspec

from tooti.backends.direct_http import DirectAnswer, DirectHttpClient, direct_url
from tooti.backends.http_errors import error_for_exception, error_for_status
from tooti.backends.protocol import BackendHealth
from tooti.backends.streaming import decode_json_object
from tooti.errors import BackendError, MalformedResponse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from tooti.backends.protocol import BackendSettings

__all__ = ["MAX_BODY_BYTES", "HttpTransport"]

_DRAIN_SEC = 5.0

MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest non-streamed response body read into memory (embeddings of long batches are big)."""


class HttpTransport:
    """A pooled HTTP client bound to one model server.

    Requests to a plain-HTTP server at an address (the usual model server beside the node) go over
    :class:`~tooti.backends.direct_http.DirectHttpClient`, which costs the node far less CPU per streamed
    token than httpx; anything else (TLS, a proxy, a host name, a test transport)
    goes through ``httpx.AsyncClient``. :meth:`stream` and :meth:`body` always use httpx and hand
    out its ``Response``, for plugins that want one; :meth:`stream_body`, :meth:`request_bytes` and
    the methods built on them take the faster path where it applies.

    Args:
        settings: base URL, timeouts and API key (sent as ``Authorization: Bearer``).
        server: a name for error messages (``"llama.cpp"``).
        base_url: overrides ``settings.base_url`` (e.g. a default port when the config has none).
        max_body_bytes: cap on non-streamed bodies; a larger body is a :class:`MalformedResponse`.
        transport: an ``httpx`` transport for tests (respx mocks without it).
    """

    def __init__(
        self,
        settings: BackendSettings,
        *,
        server: str,
        base_url: str | None = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.server = server
        self.max_body_bytes = max_body_bytes
        self._resent = 0
        headers = {"Authorization": f"Bearer {settings.api_key}"} if settings.api_key else {}
        # read = the longest silence allowed between two bytes: the first token of a long prompt
        timeout = httpx.Timeout(settings.request_timeout_sec, connect=settings.connect_timeout_sec)
        self.client = httpx.AsyncClient(
            base_url=(base_url or settings.base_url).rstrip("/"),
            headers=headers,
            timeout=timeout,
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=32),
            transport=transport,
            follow_redirects=False,
        )
        self._settings = settings
        self._headers = headers
        self._may_go_direct = transport is None
        self._direct: DirectHttpClient | None = None
        self._retired: list[DirectHttpClient] = []
        self._choose_client()

    def _choose_client(self) -> None:
        if self._direct is not None:
            self._retired.append(self._direct)  # closed with the transport (its requests may be running)
        url = self.client.base_url
        self._direct = (
            DirectHttpClient(
                url,
                headers=self._headers,
                connect_timeout=self._settings.connect_timeout_sec,
                timeout=self._settings.request_timeout_sec,
            )
            if self._may_go_direct and direct_url(url)
            else None
        )

    @property
    def resent(self) -> int:
        """Requests sent a second time after a kept connection dropped before answering (tests, status)."""
        return self._resent + sum(c.resent for c in (self._direct, *self._retired) if c is not None)

    @property
    def base_url(self) -> str:
        """The server's root URL."""
        return str(self.client.base_url).rstrip("/")

    @base_url.setter
    def base_url(self, value: str) -> None:
        self.client.base_url = httpx.URL(value.rstrip("/"))
        self._choose_client()

    async def request_bytes(self, method: str, path: str, *, json: Any = None) -> bytes:
        """Send a request and return the body of a 2xx answer (capped)."""
        if self._direct is not None:
            async with self._direct_answer(self._direct, method, path, json) as answer:
                return await self._collect(answer.header(b"content-length"), answer)
        async with self.stream(method, path, json=json) as response:
            return await self._read_capped(response)

    @asynccontextmanager
    async def stream_body(self, method: str, path: str, *, json: Any = None) -> AsyncIterator[AsyncIterator[bytes]]:
        """Send a request and iterate its 2xx body chunk by chunk; errors are mapped.

        Leaving the block early closes the connection, which is how the server learns that nobody
        wants the rest (a streamed answer stops generating).
        """
        if self._direct is not None:
            async with self._direct_answer(self._direct, method, path, json) as answer:
                yield answer
            return
        async with self.stream(method, path, json=json) as response, self.body(response) as chunks:
            yield chunks

    @asynccontextmanager
    async def _direct_answer(
        self, direct: DirectHttpClient, method: str, path: str, json: Any
    ) -> AsyncIterator[DirectAnswer]:
        """A 2xx answer from :class:`DirectHttpClient`, its body not read yet; the same errors as the httpx path."""
        content = b"" if json is None else msgspec.json.encode(json)
        try:
            answer = await direct.open(method, path, content)
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, server=self.server) from exc
        try:
            if answer.status_code >= 300:
                try:
                    body = await self._collect(answer.header(b"content-length"), answer)
                except httpx.HTTPError as exc:
                    raise error_for_exception(exc, server=self.server) from exc
                raise error_for_status(answer.status_code, body, server=self.server)
            with self._mapped():
                yield answer
        finally:
            await answer.aclose()

    async def request_json(self, method: str, path: str, *, json: Any = None) -> dict[str, Any]:
        """Send a request and decode a 2xx answer's JSON object."""
        body = await self.request_bytes(method, path, json=json)
        return decode_json_object(body, what=f"{self.server} {method} {path}")

    async def request_any_json(self, method: str, path: str, *, json: Any = None) -> Any:
        """Like :meth:`request_json` but any JSON value (``/slots`` answers a list)."""
        body = await self.request_bytes(method, path, json=json)
        try:
            return msgspec.json.decode(body)
        except msgspec.DecodeError as exc:
            raise MalformedResponse(f"{self.server} {method} {path}: invalid JSON: {exc}") from None

    async def request_text(self, method: str, path: str) -> str:
        """Send a request and return a 2xx answer as text (Prometheus metrics)."""
        return (await self.request_bytes(method, path)).decode("utf-8", errors="replace")

    @asynccontextmanager
    async def stream(self, method: str, path: str, *, json: Any = None) -> AsyncIterator[httpx.Response]:
        """Open a request whose 2xx response body the caller reads; errors are mapped.

        Leaving the block closes the response; if the body was not fully read, httpx drops the
        connection, which is how the server learns that nobody wants the rest.
        """
        try:
            response = await self._send(method, path, json)
            try:
                if response.status_code >= 300:
                    raise error_for_status(response.status_code, await self._read_capped(response), server=self.server)
                yield response
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, server=self.server) from exc

    async def _send(self, method: str, path: str, json: Any) -> httpx.Response:
        """Send once; send again, once, when a pooled keep-alive connection was dropped before any byte.

        A server that closes an idle kept connection while our next request is on its way answers
        that request with nothing at all (httpx: "Server disconnected without sending a response").
        The server never saw the request, so sending it again on a fresh connection is safe; any
        other failure, or the same one twice, is the server's.
        """
        request = self.client.build_request(method, path, json=json)
        try:
            return await self.client.send(request, stream=True)
        except httpx.RemoteProtocolError as exc:
            if not _dropped_before_answer(exc):
                raise
        self._resent += 1
        return await self.client.send(self.client.build_request(method, path, json=json), stream=True)

    @asynccontextmanager
    async def body(self, response: httpx.Response) -> AsyncIterator[AsyncIterator[bytes]]:
        """Iterate a streamed body; transport errors become tooti errors; leaving always cleans up.

        Leaving early (the consumer closed the stream, an error, a cancellation) closes the
        response, which drops the connection so the server stops generating, and then drains
        httpx's chain of body generators, which now fails at once. Drained, they finish inside
        this task instead of being left to the garbage collector, which trio reports as leaked
        async generators.
        """
        chunks = response.aiter_bytes()
        try:
            with self._mapped():
                yield chunks
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(_DRAIN_SEC):
                await _close_and_drain(response, chunks)

    @contextmanager
    def _mapped(self) -> Iterator[None]:
        try:
            yield
        except httpx.HTTPError as exc:
            raise error_for_exception(exc, server=self.server, streaming=True) from exc

    async def probe(self, path: str) -> BackendHealth:
        """GET ``path``; healthy on a 2xx answer. Never raises for a down server."""
        started = time.perf_counter()
        try:
            await self.request_bytes("GET", path)
        except BackendError as exc:
            return BackendHealth(ok=False, detail=exc.message, latency_ms=_ms(started))
        return BackendHealth(ok=True, detail="ok", latency_ms=_ms(started))

    async def aclose(self) -> None:
        """Close pooled connections. Safe to call twice."""
        for direct in (self._direct, *self._retired):
            if direct is not None:
                await direct.aclose()
        await self.client.aclose()

    async def _read_capped(self, response: httpx.Response) -> bytes:
        async with self.body(response) as body:
            return await self._collect(response.headers.get("content-length"), body)

    async def _collect(self, declared: str | None, body: AsyncIterator[bytes]) -> bytes:
        """A whole body, refused once it (or the length it declares) exceeds ``max_body_bytes``."""
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise MalformedResponse(f"{self.server} response of {declared} bytes exceeds {self.max_body_bytes}")
        chunks: list[bytes] = []
        size = 0
        async for chunk in body:
            size += len(chunk)
            if size > self.max_body_bytes:
                raise MalformedResponse(f"{self.server} response exceeds {self.max_body_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


async def _close_and_drain(response: httpx.Response, chunks: AsyncIterator[bytes]) -> None:
    await response.aclose()
    with suppress(httpx.HTTPError, httpx.StreamError):
        async for _ in chunks:
            pass  # what was buffered before the close; the next read fails


def _dropped_before_answer(exc: httpx.RemoteProtocolError) -> bool:
    """Whether the server closed the connection without sending a single byte of an answer."""
    return "without sending a response" in str(exc)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
