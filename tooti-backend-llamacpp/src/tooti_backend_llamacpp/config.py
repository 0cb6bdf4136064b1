"""The ``backends.llamacpp`` config section."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

__all__ = ["DEFAULT_BASE_URL", "LlamaCppConfig"]

DEFAULT_BASE_URL = "http://127.0.0.1:8080"
"""llama-server's default address, used when ``backend.base_url`` is empty and nothing is managed."""


class LlamaCppConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of the llama.cpp backend.

    With ``model_path`` unset the backend talks to an existing server at ``backend.base_url``.
    With ``model_path`` set it runs its own server (managed mode) and ignores ``backend.base_url``.
    """

    model_path: str | None = None
    """GGUF file to serve in managed mode."""
    alias: str = ""
    """Model name the managed server reports (default: the GGUF's ``general.name``, e.g. ``gemma-3-270m-it``)."""
    threads: Annotated[int, Meta(ge=1)] | None = None
    """CPU threads of the managed server; default half the CPUs, at least 1."""
    parallel: Annotated[int, Meta(ge=1)] = 2
    """Slots: requests generated concurrently."""
    ctx: Annotated[int, Meta(ge=256)] | None = None
    """Total context tokens, split evenly between the slots (default: the model's trained context
    per slot, cut to what half the available RAM holds as KV cache)."""
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 0
    """Managed server port; 0 picks a free one."""
    embedding: bool = False
    """Start the managed server in embedding mode (serves ``/v1/embeddings``)."""
    pooling: Literal["", "none", "mean", "cls", "last", "rank"] = ""
    """Embedding pooling; chat GGUFs name none, so set ``mean`` to embed with them."""
    chat_template: str = ""
    """A llama.cpp built-in chat template overriding the GGUF's own (e.g. ``chatml``)."""
    startup_timeout_sec: Annotated[float, Meta(gt=0)] = 120.0
    log_file: str | None = None
    """Where the managed server's log goes (default: a temporary file)."""
