"""The pluggy markers of the ``tooti`` project. Plugin authors import ``tooti.hookimpl``.

A top-level module (not in ``tooti.plugins``) because the hook specs, the built-in routing plugin
and the plugin host all use it: below all three, it keeps them free of import cycles.
"""

from __future__ import annotations

import pluggy

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "tooti"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
