"""Entry points: one registrar per strategy, so the gateway imports only the strategy it uses."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tooti import hookimpl

if TYPE_CHECKING:
    from tooti import RoutingStrategy

__all__ = ["balanced", "cost", "latency", "least_loaded"]


class _Registrar:
    """A pluggy plugin object registering one strategy class, imported on first use."""

    def __init__(self, module: str, cls: str) -> None:
        self._module = f"tooti_router_strategies.{module}"
        self._cls = cls

    @hookimpl
    def tooti_register_routers(self) -> list[type[RoutingStrategy]]:
        """Register this strategy."""
        strategy: type[RoutingStrategy] = getattr(importlib.import_module(self._module), self._cls)
        return [strategy]


least_loaded = _Registrar("least_loaded", "LeastLoadedStrategy")
latency = _Registrar("latency", "LatencyStrategy")
cost = _Registrar("cost", "CostStrategy")
balanced = _Registrar("balanced", "BalancedStrategy")
