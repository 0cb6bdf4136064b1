"""Plugin discovery and loading."""

from __future__ import annotations

from tooti.plugins.host import PluginHost
from tooti.plugins.inventory import PluginInfo, PluginKind
from tooti.plugins.markers import hookimpl, hookspec

__all__ = ["PluginHost", "PluginInfo", "PluginKind", "hookimpl", "hookspec"]
