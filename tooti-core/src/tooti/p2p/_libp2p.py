"""One-time process setup around importing libp2p: the private DHT protocol id and logging.

py-libp2p 0.8.1 bug 6 (numbered list in docs/p2p.md): ``KadDHT(protocol_prefix=...)`` is ignored on
the wire because modules import ``PROTOCOL_ID`` by value, so every module's copy is patched before any
``KadDHT`` exists. Bug 8 there: ``import libp2p`` clears the ``libp2p`` logger and stops propagation; we restore it so
libp2p warnings reach the application's handlers. Re-check the module list when the pin moves.
"""

from __future__ import annotations

import logging
import os

__all__ = ["KAD_PROTOCOL", "prepare_libp2p"]

KAD_PROTOCOL = "/tooti/kad/1.0.0"
_done = False


def prepare_libp2p() -> None:
    """Apply the DHT protocol patch and logger setup (idempotent; call before building a host)."""
    global _done  # noqa: PLW0603 - process-wide, once
    if _done:
        return
    import libp2p.kad_dht.common as kad_common
    import libp2p.kad_dht.kad_dht as kad_main
    import libp2p.kad_dht.peer_routing as kad_routing
    import libp2p.kad_dht.provider_store as kad_providers
    import libp2p.kad_dht.value_store as kad_values
    from libp2p.custom_types import TProtocol

    for module in (kad_common, kad_main, kad_routing, kad_providers, kad_values):
        module.PROTOCOL_ID = TProtocol(KAD_PROTOCOL)  # type: ignore[attr-defined]
    if not os.environ.get("LIBP2P_DEBUG"):
        logger = logging.getLogger("libp2p")
        logger.handlers.clear()
        logger.setLevel(logging.WARNING)
        logger.propagate = True
        # Routine peer churn (a peer gone, a stream refused during shutdown) is logged at WARNING or
        # ERROR by these modules with multi-line dumps; tooti reports the same failures itself
        # (BackendUnavailable and friends), so only their critical messages pass.
        for name in (
            "libp2p.kad_dht.kad_dht",
            "libp2p.host.basic_host",
            "libp2p.protocol_muxer.multiselect_client",
            "libp2p.stream_muxer.yamux.yamux",
        ):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    _done = True
