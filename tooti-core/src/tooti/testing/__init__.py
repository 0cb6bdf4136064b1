"""Testing tools for tooti and its plugin authors.

- :func:`eventually` / :func:`always` (and their ``_asyncio``, ``_trio`` twins): poll a condition until it
  holds, or all through a window, instead of sleeping a fixed time.
- :class:`FakeBackend`: a deterministic in-memory backend with failure injection and call records.
- :func:`make_plugin_host`: a :class:`~tooti.plugins.host.PluginHost` seeing only given plugins.
- :mod:`tooti.testing.conformance`: ``BackendConformance``, a test class every backend should pass.
- :mod:`tooti.testing.router_conformance`: ``check_router``, the contract every routing strategy keeps.
- :mod:`tooti.testing.pytest_plugin`: fixtures registered through the ``pytest11`` entry point.
"""

from __future__ import annotations

from tooti.testing.fake import FakeBackend, FakeCall, FakeConfig, FakeStream
from tooti.testing.plugin_hosts import backend_plugin, make_plugin_host, router_plugin
from tooti.testing.polling import (
    always,
    always_asyncio,
    always_trio,
    eventually,
    eventually_asyncio,
    eventually_trio,
)

__all__ = [
    "FakeBackend",
    "FakeCall",
    "FakeConfig",
    "FakeStream",
    "always",
    "always_asyncio",
    "always_trio",
    "backend_plugin",
    "eventually",
    "eventually_asyncio",
    "eventually_trio",
    "make_plugin_host",
    "router_plugin",
]
