"""The Litestar application factory of the OpenAI-compatible gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.openapi import OpenAPIConfig

from tooti import __version__
from tooti.gateway.access import AccessControl
from tooti.gateway.api_errors import exception_handlers
from tooti.gateway.attempt import canary_sender
from tooti.gateway.context import context_middleware_factory
from tooti.gateway.metering import Metering
from tooti.gateway.metrics import GatewayMetrics
from tooti.gateway.routes.catalog import get_model, list_models, list_nodes
from tooti.gateway.routes.explorer import EXPLORER_HANDLERS, Explorer
from tooti.gateway.routes.inference import chat_completions, completions, embeddings, responses
from tooti.gateway.routes.ops import health, metrics, ready
from tooti.gateway.routes.usage_report import usage_report
from tooti.gateway.service import Gateway
from tooti.network_capabilities import capabilities_of
from tooti.plugins.host import PluginHost
from tooti.trust.gateway_trust import GatewayTrust

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

    from tooti.accounting.store import AccountingStore
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
    store: AccountingStore | None = None,
    signing_key: KeyPair | None = None,
) -> Litestar:
    """Build the gateway app over ``network``.

    Args:
        config: the tooti config; the ``gateway``, ``routing`` and ``timeouts`` sections are used.
        network: where nodes are found and requests sent (:class:`tooti.network.Network`).
        plugin_host: where routing strategies are loaded from (default: installed entry points).
        lifespan: context managers entered at startup and left at shutdown, e.g. one that starts
            the p2p network the ``network`` object fronts.
        metrics_registry: a ``prometheus_client.CollectorRegistry``; default a fresh one per app.
        store: the accounting store (keys with budgets and limits, usage rows); ``None`` = no
            accounting, only ``gateway.api_key_hashes``. The caller opens and closes it; the app
            runs its writer thread between startup and shutdown.
        signing_key: the gateway's libp2p key; with a store, nodes are asked for signed usage
            receipts, which the gateway checks and countersigns with this key.

    Raises:
        ConfigError: the configured routing strategy is not available.
    """
    gw_metrics = GatewayMetrics(metrics_registry)
    heartbeat_counts = capabilities_of(network).heartbeat_counts  # optional: only a p2p network has them
    if heartbeat_counts is not None:
        gw_metrics.watch_heartbeats(heartbeat_counts)
    trust = GatewayTrust(config, network, store=store)
    # The gateway sees the network through admission: a non-admitted node does not exist for it.
    gateway = Gateway(config, trust.network, plugin_host or PluginHost(), gw_metrics)
    gw_metrics.registry.register(trust.collector())
    gateway.hooks.frame_checks.append(trust.frame_check)
    gateway.hooks.on_complete.append(trust.completed)
    gateway.trust_filter = trust.routable
    gateway.trust_reserve = trust.reserve
    gateway.trust_settle = trust.settle
    trust.observe(gateway.observations)
    metering = None
    if store is not None:
        metering = Metering(
            store,
            config.gateway.store,
            total_request_sec=config.timeouts.total_request_sec,
            registry=gw_metrics.registry,
            nodes=trust.network.nodes,
            signing_key=signing_key,
        )
        gateway.hooks.on_complete.append(metering.completed)
        if metering.wants_receipts:
            gateway.hooks.want_receipts = True
            gateway.hooks.frame_checks.append(metering.frame_check)
        lifespan = [*lifespan, _metering_lifespan(metering)]

    def verification(_: Litestar) -> AbstractAsyncContextManager[None]:
        # After the caller's lifespans (the p2p network must be up before canaries go out).
        return trust.lifespan(
            gateway.observations, want_receipt=gateway.hooks.want_receipts, send=canary_sender(gateway)
        )

    return Litestar(
        route_handlers=[
            chat_completions,
            completions,
            embeddings,
            responses,
            list_models,
            get_model,
            list_nodes,
            health,
            ready,
            metrics,
            usage_report,
            *EXPLORER_HANDLERS,
        ],
        state=State(
            {
                "gateway": gateway,
                "trust": trust,
                "access": AccessControl(config.gateway, gw_metrics, metering),
                "metering": metering,
                "explorer": Explorer(config.gateway),
            }
        ),
        exception_handlers=exception_handlers(),
        middleware=[context_middleware_factory(gw_metrics)],
        cors_config=_cors(config.gateway),
        request_max_body_size=config.gateway.max_body_bytes,
        openapi_config=OpenAPIConfig(title="tooti gateway", version=__version__, path="/schema"),
        lifespan=[*lifespan, verification],
        logging_config=None,
        debug=False,
    )


def _metering_lifespan(metering: Metering) -> Lifespan:
    """Start the accounting thread with the app and write what it buffered when the app stops."""

    @asynccontextmanager
    async def run(_: Litestar) -> AsyncIterator[None]:
        metering.start()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(metering.stop)

    return run
