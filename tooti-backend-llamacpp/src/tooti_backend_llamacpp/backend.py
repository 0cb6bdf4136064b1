"""The llama.cpp backend: llama-server's OpenAI API, its /metrics, /slots and /props, and managed mode."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any, ClassVar, Self

import msgspec

from tooti._aio import closing_iter
from tooti.backends.openai_compat import OpenAICompatBackend
from tooti.backends.prometheus import parse_samples
from tooti.backends.protocol import BackendHealth, LoadSnapshot, ModelInfo
from tooti.backends.stream_assembly import assemble_chat, assemble_completion
from tooti.errors import BackendBadRequest, MalformedResponse, ModelNotFound, UpstreamError
from tooti_backend_llamacpp.config import DEFAULT_BASE_URL, LlamaCppConfig
from tooti_backend_llamacpp.context_sizing import serving_context
from tooti_backend_llamacpp.fallback_templates import fallback_template
from tooti_backend_llamacpp.gguf_metadata import GGUFError, GGUFModelInfo, read_model_info
from tooti_backend_llamacpp.managed import ManagedLlamaServer

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from tooti.backends.protocol import BackendSettings, JSONObject

__all__ = ["LlamaCppBackend"]

log = logging.getLogger(__name__)

# Status answers that mean "this route is switched off", not "the server is broken".
_ROUTE_OFF = (UpstreamError, BackendBadRequest, ModelNotFound)


class LlamaCppBackend(OpenAICompatBackend):
    """A llama.cpp server (``llama-server`` or ``xllamacpp``), existing or managed by this backend."""

    name: ClassVar[str] = "llamacpp"
    config_type: ClassVar[type[msgspec.Struct]] = LlamaCppConfig
    server_name: ClassVar[str] = "llama.cpp"
    # native_endpoints stays the inherited chat/completion/embeddings: /v1/responses is translated
    # through chat, not passed through. llama-server has its own, but its stream events lack
    # output_index, content_index and sequence_number, so the official SDK's responses.stream()
    # helper fails on them (TypeError), while the translation is checked against the SDK's own types.

    def __init__(
        self, settings: BackendSettings, config: LlamaCppConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(settings, base_url=settings.base_url or DEFAULT_BASE_URL, transport=transport)
        self.config = config
        self.managed = _managed(config) if config.model_path else None
        self._slots: int | None = None

    @classmethod
    def from_config(cls, settings: BackendSettings, config: msgspec.Struct) -> Self:
        """Build the backend; no I/O (a managed server starts in :meth:`start`)."""
        if not isinstance(config, LlamaCppConfig):
            raise TypeError(f"expected LlamaCppConfig, got {type(config).__name__}")
        return cls(settings, config)

    async def start(self) -> None:
        """Start the managed server, if any, and wait until it listens."""
        if self.managed is not None:
            self.http.base_url = await self.managed.astart()

    # llama.cpp stops a streamed request at the next token once its client is gone, but does not
    # reliably notice a client that leaves a non-streamed one (measured: 3 of 4 abandoned 900-token
    # requests ran to the end). So whole answers are streamed from llama.cpp and assembled here:
    # a closed or cancelled call then always frees the slot at once.

    async def chat(self, body: JSONObject) -> JSONObject:
        """A whole chat completion, streamed from llama.cpp and assembled (usage included)."""
        async with closing_iter(self.chat_stream({**body, "stream_options": {"include_usage": True}})) as chunks:
            return await assemble_chat(chunks)

    async def completion(self, body: JSONObject) -> JSONObject:
        """A whole legacy completion, streamed from llama.cpp and assembled (usage included)."""
        async with closing_iter(self.completion_stream({**body, "stream_options": {"include_usage": True}})) as chunks:
            return await assemble_completion(chunks)

    # Conversation affinity (tooti.routing.affinity) sends the turns of one conversation here; the
    # server then reuses the prompt prefix it already processed. llama-server does so by default
    # (measured: turn 2 of a 1,000-token chat prefilled 16 new tokens in 343 ms instead of 982 in
    # 8,966 ms); asking for it explicitly keeps that on servers built with another default, and a
    # client's own ``cache_prompt`` still wins.

    def chat_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """A streamed chat completion, reusing the server's cached prompt prefix."""
        return super().chat_stream({"cache_prompt": True, **body})

    def completion_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """A streamed legacy completion, reusing the server's cached prompt prefix."""
        return super().completion_stream({"cache_prompt": True, **body})

    async def health(self) -> BackendHealth:
        """``GET /health``; a managed server that is down (restarting) is reported unhealthy."""
        if self.managed is not None and not self.managed.running:
            return BackendHealth(ok=False, detail="managed llama.cpp server is not running")
        return await super().health()

    async def list_models(self) -> list[ModelInfo]:
        """The served model with its aliases and per-slot context (``/v1/models``, else ``/props``)."""
        models = [_model_info(entry) for entry in await self.fetch_model_entries()]
        if any(m.context_length is None for m in models):
            n_ctx = await self._props_context()
            models = [m if m.context_length else msgspec.structs.replace(m, context_length=n_ctx) for m in models]
        return models

    async def load(self) -> LoadSnapshot:
        """Requests processing and deferred from ``/metrics``, or busy slots from ``/slots``."""
        capacity = await self._capacity()
        try:
            samples = parse_samples(await self.http.request_text("GET", "/metrics"))
        except _ROUTE_OFF:
            return await self._load_from_slots(capacity)
        kv = samples.get("llamacpp:kv_cache_usage_ratio")
        return LoadSnapshot(
            in_flight=int(samples.get("llamacpp:requests_processing", 0)),
            queued=int(samples.get("llamacpp:requests_deferred", 0)),
            capacity=capacity,
            kv_cache_usage=None if kv is None else min(max(kv, 0.0), 1.0),
        )

    async def aclose(self) -> None:
        """Close connections and stop the managed server (SIGTERM, then SIGKILL)."""
        await super().aclose()
        if self.managed is not None:
            await self.managed.astop()

    async def _slot_list(self) -> list[dict[str, Any]]:
        slots = await self.http.request_any_json("GET", "/slots")
        if not isinstance(slots, list):
            raise MalformedResponse("llama.cpp /slots is not a list")
        return [s for s in slots if isinstance(s, dict)]

    async def _load_from_slots(self, capacity: int | None) -> LoadSnapshot:
        try:
            slots = await self._slot_list()
        except _ROUTE_OFF:
            return LoadSnapshot(capacity=capacity)  # neither route is on: load unknown
        busy = sum(1 for s in slots if s.get("is_processing"))
        return LoadSnapshot(in_flight=busy, capacity=capacity or len(slots) or None)

    async def _props_context(self) -> int | None:
        try:
            props = await self.http.request_json("GET", "/props")
        except _ROUTE_OFF:
            return None
        settings = props.get("default_generation_settings")
        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
        return n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None

    async def _capacity(self) -> int | None:
        if self._slots is None:
            try:
                props = await self.http.request_json("GET", "/props")
            except _ROUTE_OFF:
                return None
            total = props.get("total_slots")
            self._slots = total if isinstance(total, int) and total > 0 else None
        return self._slots


def _model_info(entry: dict[str, Any]) -> ModelInfo:
    model_id = str(entry["id"])
    aliases = entry.get("aliases")
    meta = entry.get("meta")
    n_ctx = meta.get("n_ctx") if isinstance(meta, dict) else None
    return ModelInfo(
        id=model_id,
        aliases=tuple(str(a) for a in aliases if a != model_id) if isinstance(aliases, list) else (),
        context_length=n_ctx if isinstance(n_ctx, int) and n_ctx > 0 else None,
        owned_by=str(entry.get("owned_by") or "llamacpp"),
    )


def _managed(config: LlamaCppConfig) -> ManagedLlamaServer:
    """The managed server of ``config``; the model id and context come from the GGUF's header unless set."""
    assert config.model_path is not None  # noqa: S101 - checked by the caller
    try:
        info = read_model_info(config.model_path)
    except (OSError, GGUFError) as exc:
        log.warning("could not read the GGUF header of %s (%s); using llama.cpp's defaults", config.model_path, exc)
        info = GGUFModelInfo(name="", architecture="", context_length=None, chat_template="")
    ctx, why = serving_context(info, config.parallel, requested=config.ctx)
    log.info("managed llama.cpp context: %s", why)
    return ManagedLlamaServer(
        config.model_path,
        host=config.host,
        port=config.port,
        alias=config.alias or info.model_id(),
        ctx=ctx,
        parallel=config.parallel,
        threads=config.threads or max(1, (os.cpu_count() or 2) // 2),
        embedding=config.embedding,
        pooling=config.pooling,
        chat_template=config.chat_template or ("" if info.chat_template else fallback_template(info.architecture)),
        startup_timeout_sec=config.startup_timeout_sec,
        log_file=config.log_file,
        supervise=True,
    )
