"""Reaching the gateway's shared objects from a request."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection

    from tooti.gateway.service import Gateway
    from tooti.trust.gateway_trust import GatewayTrust

__all__ = ["gateway_of", "trust_of"]


def gateway_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Gateway:
    """The :class:`~tooti.gateway.service.Gateway` of the app serving ``connection``."""
    gw: Gateway = connection.app.state.gateway
    return gw


def trust_of(connection: ASGIConnection[Any, Any, Any, Any]) -> GatewayTrust:
    """The :class:`~tooti.trust.gateway_trust.GatewayTrust` (admission, verification, reputation) of the app."""
    trust: GatewayTrust = connection.app.state.trust
    return trust
