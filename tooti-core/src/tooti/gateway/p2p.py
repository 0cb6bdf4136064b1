"""The real network for ``tooti gateway start``: libp2p through :class:`tooti.p2p.client.P2PNetwork`.

Kept apart from :func:`tooti.gateway.create_app`, which takes any :class:`tooti.network.Network`, so
tests and embedders can inject another one; here the p2p runtime is started and stopped by the app's
lifespan, i.e. when uvicorn starts and stops serving.
"""

from __future__ import annotations

import importlib
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from litestar import Litestar

    from tooti.config.model import Config
    from tooti.gateway.app import Lifespan
    from tooti.network import Network

__all__ = ["p2p_network"]


def p2p_network(config: Config) -> tuple[Network, Lifespan]:
    """Build the gateway's p2p network (not started) and the lifespan that runs it."""
    client: Any = importlib.import_module("tooti.p2p.client")
    network = client.P2PNetwork.from_config(config)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await network.start()
        try:
            yield
        finally:
            await network.stop()

    return network, lifespan
