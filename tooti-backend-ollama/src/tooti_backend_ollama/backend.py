"""The Ollama backend: Ollama's native API translated to and from OpenAI's shapes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self

from tooti.backends.http import HttpTransport
from tooti.backends.http_errors import error_for_payload
from tooti.backends.protocol import BackendHealth, LoadSnapshot, ModelInfo
from tooti.backends.streaming import LineSplitter, decode_json_object
from tooti.errors import BackendError, MalformedResponse
from tooti_backend_ollama import _request, _response
from tooti_backend_ollama.config import DEFAULT_BASE_URL, OllamaConfig

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx
    import msgspec

    from tooti.backends.protocol import BackendSettings, JSONObject

__all__ = ["OllamaBackend"]

_SERVER = "Ollama"


class OllamaBackend:
    """An Ollama server, spoken to through ``/api/*``."""

    name: ClassVar[str] = "ollama"
    config_type: ClassVar[type[msgspec.Struct]] = OllamaConfig

    def __init__(
        self, settings: BackendSettings, config: OllamaConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.config = config
        self.http = HttpTransport(
            settings, server=_SERVER, base_url=settings.base_url or DEFAULT_BASE_URL, transport=transport
        )
        self.in_flight = 0
        self._context: dict[str, int | None] = {}  # digest → context length from /api/show

    @classmethod
    def from_config(cls, settings: BackendSettings, config: msgspec.Struct) -> Self:
        """Build the backend (no I/O)."""
        if not isinstance(config, OllamaConfig):
            raise TypeError(f"expected OllamaConfig, got {type(config).__name__}")
        return cls(settings, config)

    async def start(self) -> None:
        """Nothing to prepare: connections open on demand."""

    async def health(self) -> BackendHealth:
        """``GET /api/tags``: the server answers and can list its models."""
        return await self.http.probe("/api/tags")

    async def version(self) -> str:
        """The server's version from ``/api/version``."""
        return str((await self.http.request_json("GET", "/api/version")).get("version", ""))

    async def list_models(self) -> list[ModelInfo]:
        """Installed models from ``/api/tags``, ``name:latest`` also reachable as ``name``."""
        tags = _models(await self.http.request_json("GET", "/api/tags"), "/api/tags")
        running = await self._running_context()
        return [await self._model_info(entry, running) for entry in tags]

    async def load(self) -> LoadSnapshot:
        """Requests this backend has in flight; ``/api/ps`` must answer (Ollama has no queue metric)."""
        await self._ps()
        return LoadSnapshot(in_flight=self.in_flight, capacity=self.config.num_parallel)

    async def loaded_models(self) -> list[str]:
        """Names of the models loaded in memory now (``/api/ps``)."""
        return [
            str(m.get("name") or m.get("model"))
            for m in _models(await self.http.request_json("GET", "/api/ps"), "/api/ps")
        ]

    async def chat(self, body: JSONObject) -> JSONObject:
        """A non-streamed ``/api/chat`` call."""
        request = _request.chat_request(body, self.config, stream=False)
        return _response.chat_completion(await self._post("/api/chat", request))

    def chat_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """A streamed ``/api/chat`` call, NDJSON lines translated to OpenAI chunks."""
        request = _request.chat_request(body, self.config, stream=True)
        translator = _response.ChunkTranslator(body.get("model"), include_usage=_include_usage(body))
        return self._stream("/api/chat", request, translator)

    def completion_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """A streamed ``/api/generate`` call, one ``text_completion`` chunk per NDJSON line (token by token)."""
        request = _request.generate_request(body, self.config, stream=True)
        translator = _response.TextChunkTranslator(body.get("model"), include_usage=_include_usage(body))
        return self._stream("/api/generate", request, translator)

    async def completion(self, body: JSONObject) -> JSONObject:
        """A non-streamed ``/api/generate`` call."""
        request = _request.generate_request(body, self.config)
        return _response.text_completion(await self._post("/api/generate", request))

    async def embeddings(self, body: JSONObject) -> JSONObject:
        """An ``/api/embed`` call."""
        request = _request.embed_request(body, self.config)
        payload = await self._post("/api/embed", request)
        return _response.embeddings_list(payload, encoding=body.get("encoding_format"))

    async def aclose(self) -> None:
        """Close pooled connections."""
        await self.http.aclose()

    # -- internals -------------------------------------------------------------------------

    async def _post(self, path: str, request: JSONObject) -> JSONObject:
        self.in_flight += 1
        try:
            payload = await self.http.request_json("POST", path, json=request)
        finally:
            self.in_flight -= 1
        if "error" in payload:
            raise error_for_payload(payload, server=_SERVER)
        return payload

    async def _stream(
        self, path: str, request: JSONObject, translator: _response.ChunkTranslator | _response.TextChunkTranslator
    ) -> AsyncIterator[JSONObject]:
        self.in_flight += 1
        try:
            lines = LineSplitter()
            async with self.http.stream_body("POST", path, json=request) as body:
                async for raw in body:
                    for chunk in _translate(lines.feed(raw), translator):
                        yield chunk
                for chunk in _translate(lines.flush(), translator):
                    yield chunk
        finally:
            self.in_flight -= 1
        if not translator.done:
            raise MalformedResponse("Ollama stream ended without a 'done' line: the answer is incomplete")

    async def _ps(self) -> list[dict[str, Any]]:
        return _models(await self.http.request_json("GET", "/api/ps"), "/api/ps")

    async def _running_context(self) -> dict[str, int]:
        try:
            running = await self._ps()
        except BackendError:
            return {}
        return {str(m.get("name")): m["context_length"] for m in running if isinstance(m.get("context_length"), int)}

    async def _model_info(self, entry: dict[str, Any], running: dict[str, int]) -> ModelInfo:
        name = str(entry.get("name") or entry.get("model"))
        digest = entry.get("digest")
        context = self.config.num_ctx or running.get(name) or await self._trained_context(name, digest)
        return ModelInfo(
            id=name,
            aliases=(name.removesuffix(":latest"),) if name.endswith(":latest") else (),
            context_length=context,
            digest=_digest(digest),
            owned_by="ollama",
        )

    async def _trained_context(self, name: str, digest: object) -> int | None:
        key = str(digest or name)
        if key not in self._context:
            show = await self.http.request_json("POST", "/api/show", json={"model": name})
            info = show.get("model_info") or {}
            lengths = [v for k, v in info.items() if k.endswith(".context_length") and isinstance(v, int)]
            self._context[key] = lengths[0] if lengths else None
        return self._context[key]


def _include_usage(body: JSONObject) -> bool:
    """Whether the client wants the usage chunk (OpenAI's ``stream_options.include_usage``; on by default here)."""
    options = body.get("stream_options")
    return not isinstance(options, dict) or options.get("include_usage", True) is not False


def _models(payload: JSONObject, path: str) -> list[dict[str, Any]]:
    models = payload.get("models")
    if not isinstance(models, list):
        raise MalformedResponse(f"Ollama {path} answer lacks a 'models' list")
    return [m for m in models if isinstance(m, dict) and (m.get("name") or m.get("model"))]


def _digest(digest: object) -> str | None:
    if not isinstance(digest, str) or not digest:
        return None
    return digest if ":" in digest else f"sha256:{digest}"


def _translate(
    lines: list[str], translator: _response.ChunkTranslator | _response.TextChunkTranslator
) -> list[JSONObject]:
    chunks: list[JSONObject] = []
    for line in lines:
        if not line.strip():
            continue
        payload = decode_json_object(line, what="Ollama stream line")
        if "error" in payload:
            raise error_for_payload(payload, server=_SERVER)
        chunks += translator.translate(payload)
    return chunks
