"""Plugin discovery and loading."""

from __future__ import annotations

from tooti.plugin_markers import hookimpl, hookspec
from tooti.plugins.host import PluginHost
from tooti.plugins.inventory import PluginInfo, PluginKind

__all__ = ["PluginHost", "PluginInfo", "PluginKind", "hookimpl", "hookspec"]
