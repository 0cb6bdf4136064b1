"""tooti backend plugin for llamacpp."""

from __future__ import annotations

from importlib.metadata import version

__version__ = version("tooti-backend-llamacpp")
