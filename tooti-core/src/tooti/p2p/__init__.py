"""The libp2p side of tooti (trio only).

This package owns the one libp2p host of a process: identity, transports, gossipsub heartbeats,
the private Kademlia DHT and the ``/tooti/infer/1.0.0`` stream protocol. Nothing outside it imports
``trio`` or ``libp2p`` (except the node agent's trio main); the asyncio gateway reaches it through
:mod:`tooti.p2p.bridge` and :class:`tooti.p2p.p2p_network.P2PNetwork`. Importing this package itself is
cheap: libp2p is imported by the submodules that need it.
"""

from __future__ import annotations
