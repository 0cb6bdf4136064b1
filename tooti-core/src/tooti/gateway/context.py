"""Per-request bookkeeping and the middleware that turns it into response headers, metrics and logs.

The middleware wraps every routed request: it assigns the request id, and when the response starts
it adds ``x-request-id``, ``x-tooti-node``, ``x-tooti-overhead-ms`` (time the gateway itself spent,
i.e. elapsed minus time waiting on nodes) and, on request, ``x-tooti-route``.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

    from tooti.gateway.metrics import GatewayMetrics

__all__ = ["RequestContext", "context_middleware_factory", "request_context"]

log = logging.getLogger("tooti.gateway.access")

_SANE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]")
_STATE_KEY = "tooti_ctx"


class RequestContext:
    """What one request accumulates on its way through the gateway."""

    __slots__ = ("debug", "model", "node", "reasons", "request_id", "started", "status", "waited_s")

    def __init__(self, request_id: str, *, debug: bool) -> None:
        self.request_id = request_id
        self.debug = debug
        self.started = time.perf_counter()
        self.waited_s = 0.0
        """Seconds spent waiting on nodes (excluded from the overhead header)."""
        self.node: str | None = None
        self.reasons: tuple[str, ...] = ()
        self.model: str | None = None
        self.status = 0

    def overhead_ms(self) -> float:
        """Gateway time so far: elapsed minus waiting on nodes."""
        return max(0.0, (time.perf_counter() - self.started - self.waited_s) * 1000.0)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def request_context(scope: Scope) -> RequestContext:
    """The context of the request in ``scope`` (created on first use)."""
    state: dict[str, Any] = scope.setdefault("state", {})
    ctx = state.get(_STATE_KEY)
    if ctx is None:
        given = _header(scope, b"x-request-id")
        rid = given if given is not None and _SANE_ID.match(given) else f"req-{uuid.uuid4().hex}"
        ctx = state[_STATE_KEY] = RequestContext(rid, debug=_header(scope, b"x-tooti-debug") in ("1", "true"))
    return ctx


def _add_headers(message: Message, ctx: RequestContext) -> None:
    headers = MutableScopeHeaders.from_message(message)
    headers["x-request-id"] = ctx.request_id
    headers["x-tooti-overhead-ms"] = f"{ctx.overhead_ms():.2f}"
    if ctx.node:
        headers["x-tooti-node"] = ctx.node
    if ctx.debug and ctx.reasons:
        headers["x-tooti-route"] = _HEADER_UNSAFE.sub("?", "; ".join(ctx.reasons))[:4000]


def _route_label(scope: Scope) -> str:
    handler = scope.get("route_handler")
    opt = getattr(handler, "opt", {}) or {}
    return str(opt.get("route", "other"))


def context_middleware_factory(metrics: GatewayMetrics) -> Any:
    """Build the middleware, bound to the app's metrics."""

    def middleware(app: ASGIApp) -> ASGIApp:
        async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != ScopeType.HTTP:
                await app(scope, receive, send)
                return
            ctx = request_context(scope)
            route = _route_label(scope)

            async def send_wrapper(message: Message) -> None:
                if message["type"] == "http.response.start":
                    ctx.status = int(message["status"])
                    _add_headers(message, ctx)
                    metrics.overhead.labels(route=route).observe(ctx.overhead_ms() / 1000.0)
                await send(message)

            try:
                await app(scope, receive, send_wrapper)
            finally:
                elapsed = time.perf_counter() - ctx.started
                metrics.observe_request(route, ctx.status or 500, elapsed)
                log.info(
                    "%s %s %s status=%s model=%s node=%s %.1fms",
                    ctx.request_id,
                    scope.get("method", ""),
                    route,
                    ctx.status,
                    ctx.model,
                    ctx.node,
                    elapsed * 1000,
                )

        return wrapped

    return middleware
