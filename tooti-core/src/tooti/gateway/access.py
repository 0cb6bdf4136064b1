"""Who may call the ``/v1`` endpoints and how often: API keys (off/optional/required) and the rate limit."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from tooti.gateway.api_errors import ApiError
from tooti.gateway.api_keys import KeyRing
from tooti.gateway.metering import KEY_STATE
from tooti.gateway.ratelimit import RateLimiter

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

    from tooti.config.model import GatewaySection
    from tooti.gateway.metering import Metering
    from tooti.gateway.metrics import GatewayMetrics

__all__ = ["AccessControl", "access_guard"]


def _presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    auth = connection.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    key = connection.headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


class AccessControl:
    """Authentication and rate limiting for one gateway."""

    def __init__(self, section: GatewaySection, metrics: GatewayMetrics, metering: Metering | None = None) -> None:
        self.mode = section.auth_mode
        self.keys = KeyRing(section.api_key_hashes)
        self.limiter = RateLimiter(section.rate_limit_rpm)
        self.metrics = metrics
        self.metering = metering

    def _store_key(self, connection: ASGIConnection[Any, Any, Any, Any], key: str) -> str | None:
        """Identity of a key the accounting store knows, leaving its record for metering; 401 if expired."""
        if self.metering is None:
            return None
        record = self.metering.lookup(key)
        if record is None:
            return None
        if not record.usable(time.time()):
            raise ApiError(
                401, "this API key has expired", code="expired_api_key", headers={"WWW-Authenticate": "Bearer"}
            )
        connection.scope.setdefault("state", {})[KEY_STATE] = record
        return f"key:{record.id}"

    def identify(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """The client's identity for rate limiting; raises 401 when the key is missing or wrong.

        With ``auth_mode: off`` a presented key the store knows is still metered (its budget and
        limits hold, its usage is recorded under it); any other key is ignored as before.
        """
        key = _presented_key(connection)
        if self.mode == "off":
            stored = self._store_key(connection, key) if key is not None else None
            if stored is not None:
                return stored
            key = None
        if key is not None:
            known = self.keys.check(key)
            if known is not None:
                connection.scope.setdefault("state", {})[KEY_STATE] = "config:" + known.removeprefix("sha256:")[:12]
                return known
            stored = self._store_key(connection, key)
            if stored is None:
                raise ApiError(401, "invalid API key", code="invalid_api_key", headers={"WWW-Authenticate": "Bearer"})
            return stored
        if self.mode == "required":
            raise ApiError(
                401,
                "an API key is required (Authorization: Bearer <key> or X-API-Key)",
                code="missing_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        client = connection.client
        return f"addr:{client.host}" if client else "addr:unknown"

    def check(self, connection: ASGIConnection[Any, Any, Any, Any]) -> None:
        """Authenticate, then take one request from the client's bucket (429 when empty)."""
        who = self.identify(connection)
        wait = self.limiter.acquire(who)
        if wait > 0:
            self.metrics.rate_limited.inc()
            raise ApiError(
                429,
                f"rate limit of {self.limiter.rpm} requests per minute exceeded",
                code="rate_limit_exceeded",
                headers={"Retry-After": RateLimiter.retry_after_header(wait)},
            )


async def access_guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Litestar guard applied to every ``/v1`` route.

    Async although it awaits nothing: Litestar runs a synchronous guard in a worker thread, a thread
    hop on every request that profiling showed as the gateway's largest single cost.
    """
    access: AccessControl = connection.app.state.access
    access.check(connection)
