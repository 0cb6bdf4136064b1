"""``/v1/models`` and ``/v1/network/nodes``: read-only views of the registry (no I/O)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromPath

from tooti.gateway.access import access_guard
from tooti.gateway.api_errors import ApiError
from tooti.gateway.network_catalog import model_list, node_table
from tooti.gateway.state import gateway_of, trust_of

__all__ = ["get_model", "list_models", "list_nodes"]


@get("/v1/models", guards=[access_guard], opt={"route": "/v1/models"}, summary="List models served by live nodes")
async def list_models(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The union of the live nodes' models, aliases included."""
    return {"object": "list", "data": model_list(gateway_of(request).network.nodes())}


@get(
    "/v1/models/{model_id:path}",
    guards=[access_guard],
    opt={"route": "/v1/models/{model}"},
    summary="Describe one model",
)
async def get_model(request: Request[Any, Any, Any], model_id: FromPath[str]) -> dict[str, Any]:
    """One model object; a model served recently but by no live node now is listed with 0 nodes; else 404.

    The same rule as chat requests (503 rather than 404 for such a model), so a client that checks
    a model before using it is not told it does not exist while its nodes restart.
    """
    wanted = model_id.lstrip("/")
    gw = gateway_of(request)
    for entry in model_list(gw.network.nodes()):
        if entry["id"] == wanted:
            return entry
    if gw.route_table().served_recently(wanted) or await gw.providers.provided(wanted):
        return {"id": wanted, "object": "model", "created": 0, "owned_by": "tooti", "nodes": 0}
    raise ApiError(404, f"model {wanted!r} does not exist on this network", param="model", code="model_not_found")


@get(
    "/v1/network/nodes",
    guards=[access_guard],
    opt={"route": "/v1/network/nodes"},
    summary="Live nodes: models, load, TTFT, tokens/s, last seen",
)
async def list_nodes(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The registry view with this gateway's own measurements of each node."""
    gw = gateway_of(request)
    return {"object": "list", "data": node_table(gw.network.nodes(), gw.observations, trust_of(request))}
