"""Optional extras a :class:`tooti.network.Network` may offer, declared explicitly.

The contract every network meets is :class:`~tooti.network.Network` (``peer_id``, ``nodes``,
``infer``). A p2p network can do more: it keeps routing data prepared as heartbeats arrive, looks up
DHT provider records, counts heartbeats for ``/metrics``. A network offers these by implementing
:class:`WithCapabilities`; each extra is a typed, optional field of :class:`NetworkCapabilities`
(``None`` = not offered), so callers check for ``None`` instead of probing attributes by name and a
wrapper (admission, certificates) passes on, or withholds, exactly the extras it means to.
A module of its own (not ``tooti.network``) because the route table type lives in ``tooti.routing``,
which itself builds on ``tooti.network``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tooti.routing.table import RouteTable

__all__ = ["NO_CAPABILITIES", "NetworkCapabilities", "WithCapabilities", "capabilities_of"]


@dataclass(frozen=True, slots=True)
class NetworkCapabilities:
    """The extras of one network; each ``None`` when the network does not offer it."""

    route_table: Callable[[], RouteTable] | None = None
    """Routing data prepared as heartbeats arrive; the gateway routes from it in constant time.
    Without it the gateway mirrors ``nodes()`` per decision (fine for a handful of nodes)."""
    find_providers: Callable[[str], Awaitable[list[str]]] | None = None
    """Peer ids with a DHT provider record for a model (liveness still comes from ``nodes()``)."""
    heartbeat_counts: Callable[[], dict[str, int]] | None = None
    """Heartbeats by result and banned peers, read by ``/metrics``."""
    remote_host: Callable[[str], str | None] | None = None
    """The IP address the gateway observes on its live connection to a peer (``None`` while not
    connected). Observed from the socket, never what the peer announces: the per-source admission
    rate of new identities (:mod:`tooti.trust.identity_rate`) counts by it."""
    connection_direction: Callable[[str], Literal["inbound", "outbound"] | None] | None = None
    """Which side opened the gateway's live connection to a peer: ``"outbound"`` (the gateway dialled
    the node: it is reachable directly), ``"inbound"`` (the node dialled the gateway, as a node behind
    NAT does), ``None`` while not connected. Observed by the transport, never announced; read by the
    explorer page. Thread-safe and without I/O, like ``remote_host``."""

    def without_route_table(self) -> NetworkCapabilities:
        """The same extras minus the route table (a wrapper that hides nodes must not route from it)."""
        return dataclasses.replace(self, route_table=None)


NO_CAPABILITIES = NetworkCapabilities()


@runtime_checkable
class WithCapabilities(Protocol):
    """A network that declares extras."""

    @property
    def capabilities(self) -> NetworkCapabilities:
        """What this network offers beyond :class:`~tooti.network.Network`."""
        ...


def capabilities_of(network: object) -> NetworkCapabilities:
    """The extras ``network`` declares; none for a network that declares nothing (test fakes)."""
    return network.capabilities if isinstance(network, WithCapabilities) else NO_CAPABILITIES
