"""The vLLM backend: vLLM's OpenAI API, ``/health``, ``/v1/models`` and Prometheus ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Self

from tooti.backends.openai_compat import OpenAICompatBackend
from tooti.backends.prometheus import parse_samples
from tooti.backends.protocol import LoadSnapshot, ModelInfo
from tooti_backend_vllm.config import DEFAULT_BASE_URL, VllmConfig

if TYPE_CHECKING:
    import httpx
    import msgspec

    from tooti.backends.protocol import BackendSettings, Endpoint

__all__ = ["KV_CACHE_METRICS", "VllmBackend"]

KV_CACHE_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "vllm:cpu_cache_usage_perc")
"""KV-cache usage gauges, newest name first (0.32 has only the first; older releases the others)."""


class VllmBackend(OpenAICompatBackend):
    """A vLLM OpenAI-compatible server."""

    name: ClassVar[str] = "vllm"
    config_type: ClassVar[type[msgspec.Struct]] = VllmConfig
    server_name: ClassVar[str] = "vLLM"
    native_endpoints: ClassVar[frozenset[Endpoint]] = frozenset({"chat", "completion", "embeddings", "responses"})
    """vLLM's OpenAI server has its own ``/v1/responses``, so it is passed through."""

    def __init__(
        self, settings: BackendSettings, config: VllmConfig, *, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        super().__init__(settings, base_url=settings.base_url or DEFAULT_BASE_URL, transport=transport)
        self.config = config

    @classmethod
    def from_config(cls, settings: BackendSettings, config: msgspec.Struct) -> Self:
        """Build the backend (no I/O)."""
        if not isinstance(config, VllmConfig):
            raise TypeError(f"expected VllmConfig, got {type(config).__name__}")
        return cls(settings, config)

    async def list_models(self) -> list[ModelInfo]:
        """Served models (and LoRA adapters) with ``max_model_len`` from ``/v1/models``."""
        return [_model_info(entry) for entry in await self.fetch_model_entries()]

    async def load(self) -> LoadSnapshot:
        """Running and waiting requests and KV-cache usage from ``/metrics``."""
        samples = parse_samples(await self.http.request_text("GET", self.config.metrics_path))
        kv = next((samples[name] for name in KV_CACHE_METRICS if name in samples), None)
        return LoadSnapshot(
            in_flight=int(samples.get("vllm:num_requests_running", 0)),
            queued=int(samples.get("vllm:num_requests_waiting", 0)),
            capacity=self.config.capacity,
            kv_cache_usage=None if kv is None else min(max(kv, 0.0), 1.0),
        )


def _model_info(entry: dict[str, Any]) -> ModelInfo:
    max_len = entry.get("max_model_len")
    return ModelInfo(
        id=str(entry["id"]),
        context_length=max_len if isinstance(max_len, int) and max_len > 0 else None,
        owned_by=str(entry.get("owned_by") or "vllm"),
    )
