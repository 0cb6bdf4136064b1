"""The contract every backend plugin implements.

A backend adapts one model server (llama.cpp, vLLM, Ollama, ...) to OpenAI's request and response
shapes. Request bodies are OpenAI JSON objects passed through as dictionaries so that every
parameter, including ones tooti does not know, reaches the server untouched; a backend translates
only what its server's dialect needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, Self, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

__all__ = [
    "BackendHealth",
    "BackendSettings",
    "Endpoint",
    "InferenceBackend",
    "JSONObject",
    "LoadSnapshot",
    "ModelInfo",
]

JSONObject = dict[str, Any]
"""An OpenAI request or response body, as decoded JSON."""

Endpoint = Literal["chat", "completion", "embeddings", "responses"]
"""An OpenAI API endpoint a request is for (``/v1/chat/completions``, ``/v1/completions``,
``/v1/embeddings``, ``/v1/responses``)."""


class BackendSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings common to every backend, from the ``backend`` config section."""

    base_url: str
    """Root URL of the model server, e.g. ``http://127.0.0.1:8080``."""
    connect_timeout_sec: float = 5.0
    request_timeout_sec: float = 300.0
    """The same default as the config's ``backend.request_timeout_sec`` (a test keeps them one value)."""
    api_key: str | None = None


class ModelInfo(msgspec.Struct, kw_only=True, frozen=True):
    """A model a backend really serves."""

    id: str
    """The canonical name clients send as ``model``."""
    aliases: tuple[str, ...] = ()
    """Other names that reach the same model (e.g. Ollama's ``llama3.2`` for ``llama3.2:latest``)."""
    context_length: int | None = None
    digest: str | None = None
    """Content hash of the weights where the server exposes one (e.g. ``sha256:...``)."""
    owned_by: str = "tooti"


class BackendHealth(msgspec.Struct, kw_only=True, frozen=True):
    """The outcome of a health probe."""

    ok: bool
    detail: str = ""
    latency_ms: float | None = None


class LoadSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    """The server's own view of its load, read from its metrics."""

    in_flight: int = 0
    """Requests being generated now."""
    queued: int = 0
    """Requests accepted but waiting for a slot."""
    capacity: int | None = None
    """Concurrent requests the server can generate (slots, max sequences), when known."""
    kv_cache_usage: float | None = None
    """Fraction 0..1 of the KV cache in use, when known."""


@runtime_checkable
class InferenceBackend(Protocol):
    """An async adapter to one model server. All methods may raise :class:`tooti.errors.BackendError`.

    Required members:
        name: the entry-point name users write as ``backend.type`` (e.g. ``"llamacpp"``).
        config_type: the msgspec struct of the plugin's own ``backends.<name>`` config section.
        from_config: builds an instance; must not do I/O (call :meth:`start` for that).

    Optional members (hook API 2; read with :func:`tooti.backends.endpoints.native_endpoints`,
    so backends written for hook API 1 keep working):
        native_endpoints: ``ClassVar[frozenset[Endpoint]]``, the endpoints the *server* serves
            itself. Default ``{"chat", "completion", "embeddings"}``. With ``"responses"`` in it the
            backend must implement ``responses(body)`` and ``responses_stream(body)`` (Responses API
            objects and stream events); without it the node translates ``/v1/responses`` to chat.
        completion_stream(body): stream a legacy completion as ``text_completion`` chunks, token by
            token; without it a streamed completion is answered in one piece.
    """

    name: ClassVar[str]
    config_type: ClassVar[type[msgspec.Struct]]

    @classmethod
    def from_config(cls, settings: BackendSettings, config: msgspec.Struct) -> Self:
        """Build the backend from the common settings and the plugin's own section (no I/O)."""
        ...

    async def start(self) -> None:
        """Prepare connections or start a managed server; called once before any other call."""
        ...

    async def health(self) -> BackendHealth:
        """Probe the server; never raises for an unhealthy server, reports it instead."""
        ...

    async def list_models(self) -> list[ModelInfo]:
        """Return the models the server really serves, with aliases and context length."""
        ...

    async def load(self) -> LoadSnapshot:
        """Return the server's current load from its own metrics."""
        ...

    async def chat(self, body: JSONObject) -> JSONObject:
        """Run a non-streaming chat completion; returns an OpenAI ``chat.completion`` object."""
        ...

    def chat_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """Stream a chat completion as OpenAI ``chat.completion.chunk`` objects.

        The last chunk carries ``usage`` when the server reports it. Closing the iterator early
        (``aclose()``) must close the upstream request so the server stops generating. A stream
        that ends without the server's end marker raises :class:`tooti.errors.MalformedResponse`.
        """
        ...

    async def completion(self, body: JSONObject) -> JSONObject:
        """Run a legacy text completion (``/v1/completions``); returns a ``text_completion`` object."""
        ...

    async def embeddings(self, body: JSONObject) -> JSONObject:
        """Compute embeddings (``/v1/embeddings``); returns an OpenAI ``list`` of embeddings."""
        ...

    async def aclose(self) -> None:
        """Release connections and stop anything :meth:`start` started. Safe to call twice."""
        ...
