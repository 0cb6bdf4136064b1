"""The ``backends.ollama`` config section."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from msgspec import Meta

__all__ = ["DEFAULT_BASE_URL", "OllamaConfig"]

DEFAULT_BASE_URL = "http://127.0.0.1:11434"
"""Ollama's default address, used when ``backend.base_url`` is empty."""


class OllamaConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of the Ollama backend."""

    keep_alive: str | None = None
    """How long Ollama keeps a model loaded after a request (``"5m"``, ``"-1"``); default Ollama's."""
    num_ctx: Annotated[int, Meta(ge=256)] | None = None
    """Context window requested for every call (``options.num_ctx``) and reported by ``list_models``."""
    options: dict[str, Any] = msgspec.field(default_factory=dict)
    """Default Ollama ``options`` for every call; a request's own parameters win."""
    num_parallel: Annotated[int, Meta(ge=1)] | None = None
    """The server's ``OLLAMA_NUM_PARALLEL``, reported as load capacity."""
