"""The network explorer: ``/`` and ``/explorer`` (a page), its script and style, ``/explorer/summary`` (JSON).

The page and its static files carry no data, so they are served without a key (like ``/health``);
the page then polls ``/explorer/summary``, which is behind the same access guard (API key, rate
limit) as ``/v1/network/nodes``. With ``auth_mode: required`` the page asks for an API key and
keeps it in the tab's session storage only.

Usage per API key is shown to an admin only: a request whose ``X-Tooti-Admin-Key`` header matches
one of ``gateway.admin_key_hashes`` (hashed like API keys, compared in constant time). With no
admin key configured, the usage part is never served; a wrong admin key is a 401, not a silent
downgrade, so an operator knows the key was not taken.

Every response of the page carries a strict Content-Security-Policy: only this origin's script and
style, no inline code, no framing; the script writes node-supplied text with ``textContent`` only.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import TYPE_CHECKING, Any

import anyio
from litestar import Request, Response, get
from litestar.response import Redirect

from tooti.gateway.access import access_guard
from tooti.gateway.api_errors import ApiError
from tooti.gateway.api_keys import KeyRing
from tooti.gateway.routes.explorer_summary import ExplorerClock, admin_usage, summary
from tooti.gateway.state import gateway_of, trust_of

if TYPE_CHECKING:
    from litestar.connection import ASGIConnection
    from litestar.handlers.base import BaseRouteHandler

    from tooti.config.model import GatewaySection
    from tooti.gateway.metering import Metering
    from tooti.gateway.service import Gateway
    from tooti.trust.gateway_trust import GatewayTrust

__all__ = ["ADMIN_HEADER", "EXPLORER_HANDLERS", "SUMMARY_TTL_S", "Explorer"]

ADMIN_HEADER = "x-tooti-admin-key"
SUMMARY_TTL_S = 1.0
"""How long one built summary is served to every caller (the page polls every 3 s)."""
_ADMIN_STATE = "tooti.explorer.admin"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_PAGE_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-cache",
}


def _static(name: str) -> bytes:
    return resources.files("tooti.gateway.routes").joinpath("explorer_static", name).read_bytes()


class Explorer:
    """Per-app explorer state: the admin keys and the request-rate samples."""

    def __init__(self, section: GatewaySection) -> None:
        self.admin_keys = KeyRing(section.admin_key_hashes)
        self.clock = ExplorerClock()
        self.files = {name: _static(name) for name in ("index.html", "app.js", "explorer.css")}
        self._cached: tuple[float, dict[str, Any]] | None = None

    def summary(self, gw: Gateway, trust: GatewayTrust) -> dict[str, Any]:
        """The summary, built at most once per :data:`SUMMARY_TTL_S` whoever asks.

        A summary costs about 20 µs per node on the event loop (25 ms at 1,000 nodes, measured on
        the shared 2-core machine); sharing one per second bounds that cost however many pages are
        open, instead of multiplying it by them.
        """
        now = time.monotonic()
        if self._cached is None or now - self._cached[0] >= SUMMARY_TTL_S:
            self._cached = (now, summary(gw, trust, self.clock))
        return self._cached[1]

    def is_admin(self, connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
        """Whether the request presents an admin key; 401 when it presents a wrong one."""
        presented = (connection.headers.get(ADMIN_HEADER) or "").strip()
        if not presented:
            return False
        if not len(self.admin_keys) or self.admin_keys.check(presented) is None:
            raise ApiError(401, "invalid admin key", code="invalid_admin_key")
        return True


def _explorer_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Explorer:
    explorer: Explorer = connection.app.state.explorer
    return explorer


async def explorer_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The ``/v1`` access guard (key, rate limit), then the admin check of the summary."""
    await access_guard(connection, handler)
    connection.scope.setdefault("state", {})[_ADMIN_STATE] = _explorer_of(connection).is_admin(connection)


def _file(request: Request[Any, Any, Any], name: str, media_type: str) -> Response[bytes]:
    return Response(_explorer_of(request).files[name], media_type=media_type, headers=_PAGE_HEADERS)


@get("/", opt={"route": "/"}, include_in_schema=False)
async def explorer_root(request: Request[Any, Any, Any]) -> Redirect:
    """The gateway's front page is the explorer (the query string, e.g. ``?poll=1``, is kept)."""
    query = request.url.query
    return Redirect("/explorer" + (f"?{query}" if query else ""), status_code=302)


@get("/explorer", opt={"route": "/explorer"}, summary="The network explorer page (HTML)")
async def explorer_page(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The page; it holds no data and loads the summary with its script."""
    return _file(request, "index.html", "text/html; charset=utf-8")


@get("/explorer/app.js", opt={"route": "/explorer/app.js"}, include_in_schema=False)
async def explorer_script(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The page's script (no build step, no dependency)."""
    return _file(request, "app.js", "text/javascript; charset=utf-8")


@get("/explorer/explorer.css", opt={"route": "/explorer/explorer.css"}, include_in_schema=False)
async def explorer_style(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The page's style sheet."""
    return _file(request, "explorer.css", "text/css; charset=utf-8")


@get(
    "/explorer/summary",
    guards=[explorer_guard],
    opt={"route": "/explorer/summary"},
    summary="What the explorer shows: gateway counters, models, nodes; usage per key for an admin",
)
async def explorer_summary(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """The page's data (no prompts, completions or keys); ``usage`` only with an admin key."""
    explorer = _explorer_of(request)
    body = dict(explorer.summary(gateway_of(request), trust_of(request)))  # a copy: usage is per caller
    metering: Metering | None = request.app.state.get("metering")
    if not len(explorer.admin_keys):
        body["usage"] = {"shown": False, "reason": "no admin key is configured (gateway.admin_key_hashes)"}
    elif not request.scope.get("state", {}).get(_ADMIN_STATE):
        body["usage"] = {"shown": False, "reason": "usage per key is shown to an admin only (enter the admin key)"}
    elif metering is None:
        body["usage"] = {"shown": False, "reason": "this gateway records no usage (gateway.store.enabled is false)"}
    else:
        keys = await anyio.to_thread.run_sync(admin_usage, metering.store)
        body["usage"] = {"shown": True, "keys": keys}
    return Response(body, headers={"cache-control": "no-store"})


EXPLORER_HANDLERS = (explorer_root, explorer_page, explorer_script, explorer_style, explorer_summary)
"""Every explorer route, for :func:`tooti.gateway.app.create_app`."""
