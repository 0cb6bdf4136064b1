"""How much context a managed llama.cpp server gets: the model's trained context, bounded by memory.

llama.cpp allocates the whole KV cache at start (``ctx`` tokens shared by the slots), so serving a
32k-token model with 2 slots on a small machine could fail to start or push the host into swap.
The trained context per slot is served unless the KV cache would take more than a share of the
available RAM, in which case the context is cut to fit and the reason is logged in plain words.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tooti_backend_llamacpp.gguf_metadata import GGUFModelInfo

__all__ = ["DEFAULT_CTX_PER_SLOT", "KV_RAM_SHARE", "available_ram_bytes", "serving_context"]

log = logging.getLogger(__name__)

DEFAULT_CTX_PER_SLOT = 4096
"""Per-slot context when the GGUF names no trained context."""
KV_RAM_SHARE = 0.5
"""The share of available RAM the KV cache may take."""
_MIN_CTX = 256


def available_ram_bytes() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` (Linux), else ``None`` (no cap)."""
    try:
        with Path("/proc/meminfo").open(encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def serving_context(
    info: GGUFModelInfo, parallel: int, *, requested: int | None = None, ram_bytes: int | None = None
) -> tuple[int, str]:
    """Total ``ctx`` for llama.cpp (per-slot context x ``parallel``) and a one-line explanation.

    ``requested`` (``--ctx-size``, total) wins over the trained context but is still capped by memory;
    a per-slot context above the trained one is allowed only when asked for.
    """
    per_slot = info.context_length or DEFAULT_CTX_PER_SLOT
    total = requested if requested else per_slot * parallel
    why = f"{total} tokens ({total // parallel} per slot x {parallel})"
    why += " as requested" if requested else (" (the model's trained context)" if info.context_length else " (default)")
    ram = (
        ram_bytes if ram_bytes is not None else (None if os.environ.get("TOOTI_NO_RAM_CAP") else available_ram_bytes())
    )
    if ram and info.kv_bytes_per_token:
        fits = int(ram * KV_RAM_SHARE) // info.kv_bytes_per_token
        fits -= fits % parallel
        if fits < total:
            cut = max(fits, _MIN_CTX * parallel)
            why = (
                f"{cut} tokens ({cut // parallel} per slot x {parallel}), cut from {total}: a KV cache of "
                f"{total * info.kv_bytes_per_token // 2**20} MiB would exceed {int(KV_RAM_SHARE * 100)}% of the "
                f"{ram // 2**20} MiB of available RAM (set ctx / --ctx-size to choose)"
            )
            total = cut
    return total, why
