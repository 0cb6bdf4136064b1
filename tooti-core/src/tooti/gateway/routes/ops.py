"""Operational endpoints: liveness, readiness and Prometheus metrics (no auth, no I/O)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get

from tooti.gateway.metrics import CONTENT_TYPE
from tooti.gateway.state import gateway_of

__all__ = ["health", "metrics", "ready"]


@get("/health", opt={"route": "/health"}, summary="The gateway process is up")
async def health() -> dict[str, str]:
    """Always 200 while the process serves HTTP."""
    return {"status": "ok"}


@get("/ready", opt={"route": "/ready"}, summary="At least one live node is known")
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """200 with the node count when a node is live, else 503."""
    count = len(gateway_of(request).network.nodes())
    status = 200 if count else 503
    return Response({"status": "ready" if count else "no live nodes", "nodes": count}, status_code=status)


@get("/metrics", opt={"route": "/metrics"}, summary="Prometheus metrics")
async def metrics(request: Request[Any, Any, Any]) -> Response[bytes]:
    """The gateway's metrics in Prometheus text format."""
    gw = gateway_of(request)
    gw.metrics.in_flight.set(gw.observations.total_in_flight())
    return Response(gw.metrics.render(), media_type=CONTENT_TYPE)
