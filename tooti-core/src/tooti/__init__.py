"""tooti: a decentralized AI inference network with an OpenAI-compatible gateway.

Public API for plugin authors: :data:`hookimpl`, the :class:`InferenceBackend` and
:class:`RoutingStrategy` contracts and their data types, and the error hierarchy in
:mod:`tooti.errors`.
"""

from __future__ import annotations

from tooti._version import __version__
from tooti.backends.protocol import (
    BackendHealth,
    BackendSettings,
    InferenceBackend,
    JSONObject,
    LoadSnapshot,
    ModelInfo,
)
from tooti.hookspecs import TOOTI_HOOK_API
from tooti.plugin_markers import hookimpl
from tooti.routing.protocol import Candidate, Decision, Preferences, RoutingStrategy

__all__ = [
    "TOOTI_HOOK_API",
    "BackendHealth",
    "BackendSettings",
    "Candidate",
    "Decision",
    "InferenceBackend",
    "JSONObject",
    "LoadSnapshot",
    "ModelInfo",
    "Preferences",
    "RoutingStrategy",
    "__version__",
    "hookimpl",
]
