"""The shared base of backends whose servers speak OpenAI's HTTP API (llama.cpp, vLLM, ...).

Request bodies pass through untouched, unknown fields included; the only edits are the ones a
method's contract needs: ``stream`` is set to match the method, a streamed chat asks for a usage
chunk (``stream_options.include_usage``) unless the client decided otherwise, and a non-streamed
call drops ``stream_options`` (vLLM rejects it without ``stream``). Streams must end with
``data: [DONE]``; anything else is a :class:`~tooti.errors.MalformedResponse`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from tooti.backends.endpoints import DEFAULT_NATIVE_ENDPOINTS
from tooti.backends.http import HttpTransport
from tooti.backends.http_errors import error_for_payload
from tooti.backends.streaming import LineSplitter, SSEDecoder, decode_json_object
from tooti.errors import MalformedResponse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from tooti.backends.protocol import BackendHealth, BackendSettings, Endpoint, JSONObject

__all__ = ["OpenAICompatBackend", "non_stream_body", "stream_body"]

DONE = "[DONE]"
_TERMINAL_RESPONSE_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


def stream_body(body: JSONObject) -> JSONObject:
    """A copy of ``body`` for a streamed call, asking for usage unless the client set stream_options."""
    out = {**body, "stream": True}
    out.setdefault("stream_options", {"include_usage": True})
    return out


def non_stream_body(body: JSONObject) -> JSONObject:
    """A copy of ``body`` for a non-streamed call."""
    out = {**body, "stream": False}
    out.pop("stream_options", None)
    return out


class OpenAICompatBackend:
    """Chat, streaming chat, completions, embeddings and health over OpenAI's HTTP API.

    Subclasses set ``name``, ``config_type``, ``server_name`` and implement ``from_config``,
    ``list_models`` and ``load`` (each server exposes models and load differently).

    Args:
        settings: the common backend settings.
        base_url: overrides ``settings.base_url`` (a default port, a managed server).
        transport: an ``httpx`` transport for tests.
    """

    server_name: ClassVar[str] = "OpenAI-compatible server"
    health_path: ClassVar[str] = "/health"
    chat_path: ClassVar[str] = "/v1/chat/completions"
    completion_path: ClassVar[str] = "/v1/completions"
    embeddings_path: ClassVar[str] = "/v1/embeddings"
    responses_path: ClassVar[str] = "/v1/responses"
    models_path: ClassVar[str] = "/v1/models"
    native_endpoints: ClassVar[frozenset[Endpoint]] = DEFAULT_NATIVE_ENDPOINTS
    """What the server serves itself; a subclass adds ``"responses"`` when its server has ``/v1/responses``."""

    def __init__(
        self,
        settings: BackendSettings,
        *,
        base_url: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.http = HttpTransport(settings, server=self.server_name, base_url=base_url, transport=transport)

    async def start(self) -> None:
        """Nothing to prepare: connections open on demand."""

    async def health(self) -> BackendHealth:
        """GET the server's health route."""
        return await self.http.probe(self.health_path)

    async def chat(self, body: JSONObject) -> JSONObject:
        """POST a non-streamed chat completion."""
        return await self._post(self.chat_path, non_stream_body(body), "choices")

    def chat_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """POST a streamed chat completion and yield its chunks until ``[DONE]``."""
        return self._sse(self.chat_path, stream_body(body))

    async def completion(self, body: JSONObject) -> JSONObject:
        """POST a non-streamed legacy completion."""
        return await self._post(self.completion_path, non_stream_body(body), "choices")

    def completion_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """POST a streamed legacy completion and yield its ``text_completion`` chunks until ``[DONE]``."""
        return self._sse(self.completion_path, stream_body(body))

    async def embeddings(self, body: JSONObject) -> JSONObject:
        """POST an embeddings request."""
        return await self._post(self.embeddings_path, dict(body), "data")

    async def responses(self, body: JSONObject) -> JSONObject:
        """POST a non-streamed Responses API request (only for servers with ``"responses"`` native)."""
        return await self._post(self.responses_path, non_stream_body(body), "output")

    async def responses_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """POST a streamed Responses API request and yield its events until the terminal one.

        The Responses stream has no ``[DONE]``: it is complete when ``response.completed``,
        ``response.incomplete`` or ``response.failed`` arrived; an ``error`` event raises.
        """
        lines, events = LineSplitter(), SSEDecoder()
        ended = False
        async with self.http.stream_body("POST", self.responses_path, json={**body, "stream": True}) as chunks:
            async for raw in chunks:
                for data in _events(lines.feed(raw), events):
                    event = self._response_event(data)
                    if event is not None:
                        ended = ended or event.get("type") in _TERMINAL_RESPONSE_EVENTS
                        yield event
            for data in _events(lines.flush(), events, final=True):
                event = self._response_event(data)
                if event is not None:
                    ended = ended or event.get("type") in _TERMINAL_RESPONSE_EVENTS
                    yield event
        if not ended:
            raise MalformedResponse(f"{self.server_name} Responses stream ended before response.completed")

    def _response_event(self, data: str) -> JSONObject | None:
        if data.strip() == DONE:
            return None
        event = decode_json_object(data, what=f"{self.server_name} Responses stream event")
        if event.get("type") == "error" or (event.get("error") and not isinstance(event.get("type"), str)):
            raise error_for_payload(event if "error" in event else {"error": event}, server=self.server_name)
        if not isinstance(event.get("type"), str):
            raise MalformedResponse(f"{self.server_name} Responses stream event lacks a 'type'")
        return event

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self.http.aclose()

    async def fetch_model_entries(self) -> list[dict[str, Any]]:
        """The ``data`` entries of ``GET /v1/models`` that have a string ``id``."""
        payload = await self.http.request_json("GET", self.models_path)
        data = payload.get("data")
        if not isinstance(data, list):
            raise MalformedResponse(f"{self.server_name} {self.models_path} has no 'data' list")
        return [e for e in data if isinstance(e, dict) and isinstance(e.get("id"), str)]

    async def _post(self, path: str, body: JSONObject, required: str) -> JSONObject:
        payload = await self.http.request_json("POST", path, json=body)
        if "error" in payload:
            raise error_for_payload(payload, server=self.server_name)
        if not isinstance(payload.get(required), list):
            raise MalformedResponse(f"{self.server_name} {path} answer lacks a {required!r} list")
        return payload

    async def _sse(self, path: str, body: JSONObject) -> AsyncIterator[JSONObject]:
        lines, events = LineSplitter(), SSEDecoder()
        done = False  # after [DONE] the body is still read to its end so the connection is reused
        async with self.http.stream_body("POST", path, json=body) as chunks:
            async for raw in chunks:
                for data in _events(lines.feed(raw), events):
                    done = done or data.strip() == DONE
                    if not done:
                        yield self._chunk(data)
            for data in _events(lines.flush(), events, final=True):
                done = done or data.strip() == DONE
                if not done:
                    yield self._chunk(data)
        if not done:
            raise MalformedResponse(f"{self.server_name} stream ended without [DONE]: the answer is incomplete")

    def _chunk(self, data: str) -> JSONObject:  # chat and legacy-completion chunks alike
        chunk = decode_json_object(data, what=f"{self.server_name} stream event")
        if "error" in chunk:
            raise error_for_payload(chunk, server=self.server_name)
        if not isinstance(chunk.get("choices"), list):
            raise MalformedResponse(f"{self.server_name} stream chunk lacks a 'choices' list")
        return chunk


def _events(lines: list[str], decoder: SSEDecoder, *, final: bool = False) -> list[str]:
    out = [data for line in lines if (data := decoder.feed(line)) is not None]
    if final and (last := decoder.flush()) is not None:
        out.append(last)
    return out
