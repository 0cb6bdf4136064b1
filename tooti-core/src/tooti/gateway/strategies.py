"""Choosing and caching routing strategies: the configured default and per-request overrides."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from tooti.errors import ConfigError, PluginError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tooti.plugins.host import PluginHost
    from tooti.routing.protocol import RoutingStrategy

__all__ = ["StrategyResolver", "UnknownStrategy"]

log = logging.getLogger(__name__)

_PREFERRED_DEFAULT = "balanced"
_FALLBACK_DEFAULT = "simple"


class UnknownStrategy(ValueError):
    """A request named a strategy that is not installed or does not load."""


class StrategyResolver:
    """Loads strategies by name through the plugin host, once each, and builds them with their params.

    Args:
        host: where strategy classes come from.
        configured: ``routing.strategy``; ``None`` = ``balanced`` if it loads, else ``simple``.
        params: ``routing.params``, keyed by strategy name.

    Raises:
        ConfigError: the configured strategy is missing, fails to load or rejects its params.
    """

    def __init__(self, host: PluginHost, configured: str | None, params: Mapping[str, Mapping[str, Any]]) -> None:
        self._host = host
        self._params = params
        self._cache: dict[str, RoutingStrategy] = {}
        if configured is None:
            configured = _PREFERRED_DEFAULT if self._try_load(_PREFERRED_DEFAULT) else _FALLBACK_DEFAULT
        try:
            self.default = self._build(configured)
        except (PluginError, ValueError) as exc:
            raise ConfigError(f"routing.strategy: {exc}") from exc

    def _try_load(self, name: str) -> bool:
        try:
            self._build(name)
        except (PluginError, ValueError) as exc:
            log.debug("strategy %r not usable, falling back: %s", name, exc)
            return False
        return True

    def _build(self, name: str) -> RoutingStrategy:
        cached = self._cache.get(name)
        if cached is None:
            cls = self._host.router_class(name)
            cached = self._cache[name] = cls.from_params(dict(self._params.get(name, {})))
        return cached

    def get(self, name: str | None) -> RoutingStrategy:
        """The strategy called ``name`` (the default when ``None``); raises :class:`UnknownStrategy`."""
        if name is None:
            return self.default
        try:
            return self._build(name)
        except (PluginError, ValueError) as exc:
            raise UnknownStrategy(f"routing strategy {name!r} is not available: {exc}") from exc
