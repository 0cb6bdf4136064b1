"""Testing tools for tooti and its plugin authors.

- :class:`FakeBackend`: a deterministic in-memory backend with failure injection and call records.
- :func:`make_plugin_host`: a :class:`~tooti.plugins.host.PluginHost` seeing only given plugins.
- :mod:`tooti.testing.conformance`: ``BackendConformance``, a test class every backend should pass.
- :mod:`tooti.testing.router_conformance`: ``check_router``, the contract every routing strategy keeps.
- :mod:`tooti.testing.pytest_plugin`: fixtures registered through the ``pytest11`` entry point.
"""

from __future__ import annotations

from tooti.testing.fake import FakeBackend, FakeCall, FakeConfig, FakeStream
from tooti.testing.plugin_hosts import backend_plugin, make_plugin_host, router_plugin

__all__ = [
    "FakeBackend",
    "FakeCall",
    "FakeConfig",
    "FakeStream",
    "backend_plugin",
    "make_plugin_host",
    "router_plugin",
]
