"""The real network for ``tooti gateway start``: libp2p through :class:`tooti.p2p.p2p_network.P2PNetwork`.

Kept apart from :func:`tooti.gateway.create_app`, which takes any :class:`tooti.network.Network`, so
tests and embedders can inject another one; here the p2p runtime is started and stopped by the app's
lifespan, i.e. when uvicorn starts and stops serving.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from litestar import Litestar

    from tooti.config.model import Config
    from tooti.gateway.app import Lifespan
    from tooti.p2p.p2p_network import P2PNetwork

__all__ = ["p2p_network"]

log = logging.getLogger(__name__)


def p2p_network(config: Config, *, identity_file: Path | None = None) -> tuple[P2PNetwork, Lifespan]:
    """Build the gateway's p2p network (not started) and the lifespan that runs it.

    Args:
        config: ``listen``, ``network`` and ``heartbeat`` sections are used.
        identity_file: the gateway's own key file, for a stable peer id (nodes may allow-list
            it); default a fresh identity per start. Never the node's key file.
    """
    from tooti.p2p.p2p_network import P2PNetwork

    network = P2PNetwork.from_config(config, identity_file=identity_file)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await network.start()
        # Nodes bootstrap from one of these; say them where an operator will look.
        log.info("gateway p2p peer %s listening on %s", network.peer_id, ", ".join(network.listen_addrs()))
        try:
            yield
        finally:
            await network.stop()

    return network, lifespan
