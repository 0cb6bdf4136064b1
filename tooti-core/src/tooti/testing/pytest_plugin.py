"""pytest fixtures for tooti and plugin authors, loaded through the ``pytest11`` entry point.

Fixtures:
    fake_backend: a fresh :class:`~tooti.testing.FakeBackend` per test.
    plugin_host: a fresh :class:`~tooti.plugins.host.PluginHost` per test that knows only
        :class:`~tooti.testing.FakeBackend` (no entry points, no environment switches).

Kept import-light: pytest loads this module in every run of any project that has tooti installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tooti.plugins.host import PluginHost
    from tooti.testing.fake import FakeBackend

__all__ = ["fake_backend", "plugin_host"]


@pytest.fixture
def fake_backend() -> FakeBackend:
    """A fresh fake backend serving ``fake-model``."""
    from tooti.testing.fake import FakeBackend

    return FakeBackend()


@pytest.fixture
def plugin_host() -> PluginHost:
    """A plugin host that sees only the fake backend and the built-in router."""
    from tooti.testing.plugin_hosts import make_plugin_host

    return make_plugin_host()
