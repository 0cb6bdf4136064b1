"""Records describing installed plugins, for ``tooti plugins list`` and diagnostics."""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["KINDS", "PluginInfo", "PluginKind"]

PluginKind = Literal["backend", "router"]

KINDS: dict[PluginKind, tuple[str, str]] = {
    "backend": ("tooti.backends", "tooti_register_backends"),
    "router": ("tooti.routers", "tooti_register_routers"),
}
"""Kind → (entry-point group, registration hook name)."""


class PluginInfo(msgspec.Struct, kw_only=True):
    """One plugin entry point (or internal plugin) and what became of it."""

    name: str
    kind: PluginKind
    distribution: str | None
    version: str | None
    status: str
    """``ok``, ``disabled`` or ``failed: <Type: message>``."""
    entry_point: str | None = None
    provides: list[str] = msgspec.field(default_factory=list)
    hooks: list[str] = msgspec.field(default_factory=list)
    internal: bool = False
