"""``GET /v1/usage``: the caller's own key — its budget, totals, usage per model and day, recent rows.

Only the key presented with the request is reported (never another key's rows, whatever the
query says). Prompts and completions are never stored, so none can be shown.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, get

from tooti.gateway.access import access_guard
from tooti.gateway.api_errors import ApiError
from tooti.gateway.metering import KEY_STATE, Metering

__all__ = ["usage_report"]

_MAX_ROWS = 1000


@get(
    "/v1/usage",
    guards=[access_guard],
    opt={"route": "/v1/usage"},
    summary="Usage of the API key making the request (totals, per model and day, recent requests)",
)
async def usage_report(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """Report the presented key's usage since ``?since=`` (Unix seconds), with up to ``?limit=`` recent rows."""
    metering: Metering | None = request.app.state.get("metering")
    if metering is None:
        raise ApiError(404, "this gateway records no usage (gateway.store.enabled is false)", code="usage_disabled")
    who = request.scope.get("state", {}).get(KEY_STATE)
    if who is None:
        raise ApiError(
            401,
            "usage is reported per API key: send yours (Authorization: Bearer <key>)",
            code="missing_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        raw_since = request.query_params.get("since")
        since = float(raw_since) if raw_since is not None else None
        limit = int(request.query_params.get("limit", "50"))
    except ValueError:
        raise ApiError(400, "since must be a number (Unix seconds) and limit an integer") from None
    if not 1 <= limit <= _MAX_ROWS:
        raise ApiError(400, f"limit must be between 1 and {_MAX_ROWS}", param="limit")
    return await metering.report(who, since, limit)
