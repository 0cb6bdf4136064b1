"""Routing strategies for the tooti gateway."""

from __future__ import annotations

from importlib.metadata import version

__version__ = version("tooti-router-strategies")
