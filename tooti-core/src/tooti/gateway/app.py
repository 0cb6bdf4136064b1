"""The Litestar application factory of the OpenAI-compatible gateway."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from tooti import __version__
from tooti.gateway.access import AccessControl
from tooti.gateway.api_errors import exception_handlers
from tooti.gateway.context import context_middleware_factory
from tooti.gateway.metrics import GatewayMetrics
from tooti.gateway.routes.catalog import get_model, list_models, list_nodes
from tooti.gateway.routes.inference import chat_completions, completions, embeddings
from tooti.gateway.routes.ops import health, metrics, ready
from tooti.gateway.service import Gateway
from tooti.plugins.host import PluginHost

if TYPE_CHECKING:
    from tooti.config.model import Config, GatewaySection
    from tooti.network import Network

__all__ = ["Lifespan", "create_app"]

Lifespan = Callable[[Litestar], AbstractAsyncContextManager[Any]]
"""A context manager run around the app's life (e.g. starting and stopping the p2p network)."""

_EXPOSED = ["x-request-id", "x-tooti-node", "x-tooti-overhead-ms", "x-tooti-route"]
_ALLOWED_HEADERS = [
    "authorization",
    "content-type",
    "x-api-key",
    "x-request-id",
    "x-tooti-debug",
    "openai-organization",
]


def _cors(section: GatewaySection) -> CORSConfig | None:
    if not section.cors_allowed_origins:
        return None
    return CORSConfig(
        allow_origins=list(section.cors_allowed_origins),
        allow_methods=["GET", "POST", "OPTIONS"],
        allow_headers=_ALLOWED_HEADERS,
        expose_headers=_EXPOSED,
        allow_credentials=False,
    )


def create_app(
    config: Config,
    network: Network,
    plugin_host: PluginHost | None = None,
    *,
    lifespan: Sequence[Lifespan] = (),
    metrics_registry: Any = None,
) -> Litestar:
    """Build the gateway app over ``network``.

    Args:
        config: the tooti config; the ``gateway``, ``routing`` and ``timeouts`` sections are used.
        network: where nodes are found and requests sent (:class:`tooti.network.Network`).
        plugin_host: where routing strategies are loaded from (default: installed entry points).
        lifespan: context managers entered at startup and left at shutdown, e.g. one that starts
            the p2p network the ``network`` object fronts.
        metrics_registry: a ``prometheus_client.CollectorRegistry``; default a fresh one per app.

    Raises:
        ConfigError: the configured routing strategy is not available.
    """
    gw_metrics = GatewayMetrics(metrics_registry)
    heartbeat_counts = getattr(network, "heartbeat_counts", None)  # optional: only a p2p network has them
    if callable(heartbeat_counts):
        gw_metrics.watch_heartbeats(heartbeat_counts)
    gateway = Gateway(config, network, plugin_host or PluginHost(), gw_metrics)
    return Litestar(
        route_handlers=[
            chat_completions,
            completions,
            embeddings,
            list_models,
            get_model,
            list_nodes,
            health,
            ready,
            metrics,
        ],
        state=State({"gateway": gateway, "access": AccessControl(config.gateway, gw_metrics)}),
        exception_handlers=exception_handlers(),
        middleware=[context_middleware_factory(gw_metrics)],
        cors_config=_cors(config.gateway),
        request_max_body_size=config.gateway.max_body_bytes,
        openapi_config=OpenAPIConfig(title="tooti gateway", version=__version__, path="/schema"),
        lifespan=list(lifespan),
        logging_config=None,
        debug=False,
    )
