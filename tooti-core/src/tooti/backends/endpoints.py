"""Which OpenAI endpoints a backend serves natively, and serving the others through chat.

A backend declares the endpoints its server speaks in ``native_endpoints`` (hook API 2). The node
calls :func:`create_response`, :func:`stream_response` and :func:`stream_completion` for every
backend alike: they pass a request through when the server speaks the endpoint, and otherwise
translate it (:mod:`tooti.backends.responses_translation`) or answer it in one piece. Closing a
returned stream closes the backend's own stream, so the server stops generating.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, cast

from tooti._aio import closing_iter
from tooti.backends.responses_translation import ResponsesStreamTranslator, chat_to_response, responses_to_chat

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator

    from tooti.backends.protocol import Endpoint, InferenceBackend, JSONObject

__all__ = [
    "DEFAULT_NATIVE_ENDPOINTS",
    "NativeResponses",
    "create_response",
    "native_endpoints",
    "stream_completion",
    "stream_response",
]

DEFAULT_NATIVE_ENDPOINTS: frozenset[Endpoint] = frozenset({"chat", "completion", "embeddings"})
"""What a backend that declares nothing (hook API 1) is taken to serve."""


class NativeResponses(Protocol):
    """The members a backend with ``"responses"`` in ``native_endpoints`` has."""

    async def responses(self, body: JSONObject) -> JSONObject:
        """A whole Responses API answer from the server."""
        ...

    def responses_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """The server's Responses API stream events, through the terminal one."""
        ...


def native_endpoints(backend: InferenceBackend) -> frozenset[Endpoint]:
    """The endpoints ``backend``'s server serves itself."""
    declared = getattr(backend, "native_endpoints", None)
    return frozenset(declared) if declared is not None else DEFAULT_NATIVE_ENDPOINTS


async def create_response(backend: InferenceBackend, body: JSONObject) -> JSONObject:
    """A whole Responses API answer: passed through, or translated to and from a chat completion."""
    if "responses" in native_endpoints(backend):
        return await cast("NativeResponses", backend).responses(body)
    chat = await backend.chat(responses_to_chat(body))
    return chat_to_response(chat, body)


async def stream_response(backend: InferenceBackend, body: JSONObject) -> AsyncGenerator[JSONObject, None]:
    """Responses API stream events: passed through, or translated from a chat stream."""
    if "responses" in native_endpoints(backend):
        async with closing_iter(cast("NativeResponses", backend).responses_stream(body)) as events:
            async for event in events:
                yield event
        return
    chat = responses_to_chat(body)  # raises before anything is sent for untranslatable input
    translator = ResponsesStreamTranslator(body)
    for event in translator.start():
        yield event
    async with closing_iter(backend.chat_stream(chat)) as chunks:
        async for chunk in chunks:
            for event in translator.feed(chunk):
                yield event
    for event in translator.finish():
        yield event


async def stream_completion(backend: InferenceBackend, body: JSONObject) -> AsyncGenerator[JSONObject, None]:
    """Legacy-completion chunks token by token, or the whole answer as one chunk without ``completion_stream``."""
    streamer = getattr(backend, "completion_stream", None)
    if streamer is None:
        yield await backend.completion(body)
        return
    async with closing_iter(streamer(body)) as chunks:
        async for chunk in chunks:
            yield chunk
