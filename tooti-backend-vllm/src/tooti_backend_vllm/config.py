"""The ``backends.vllm`` config section."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta

__all__ = ["DEFAULT_BASE_URL", "VllmConfig"]

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
"""``vllm serve``'s default address, used when ``backend.base_url`` is empty."""


class VllmConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Settings of the vLLM backend."""

    capacity: Annotated[int, Meta(ge=1)] | None = None
    """The server's ``--max-num-seqs``, reported as load capacity (vLLM's metrics do not expose it)."""
    metrics_path: str = "/metrics"
