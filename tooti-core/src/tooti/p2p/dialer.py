"""The one dial procedure of a host: scopes, per-peer backoff, a clean peerstore, bounded and shielded.

Requests (:meth:`Dialer.ensure_connected`), the peer keeper and bootstrap all dial through here, so
a peer cannot make this host dial outside its scopes or in a loop whatever path it uses. Implements
:class:`tooti.p2p.dial_policy.PeerDialer`, the interface the peer keeper sees.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from tooti.errors import BackendUnavailable
from tooti.p2p.dial_policy import DialBackoff

if TYPE_CHECKING:
    from collections.abc import Iterable

    from libp2p.abc import IHost
    from libp2p.kad_dht.kad_dht import KadDHT
    from libp2p.peer.id import ID

    from tooti.p2p.dial_policy import DialScopes
    from tooti.p2p.registry import Registry

__all__ = ["CONNECT_TIMEOUT", "Dialer"]

CONNECT_TIMEOUT = 5.0


class Dialer:
    """Dials peers of one host; every method runs in the runtime's trio loop.

    Args:
        host: the libp2p host.
        registry: where heartbeats put the addresses nodes announce (the first addresses tried).
    """

    def __init__(self, host: IHost, registry: Registry) -> None:
        self.host = host
        self.registry = registry
        self.backoff = DialBackoff()
        self.scopes: DialScopes | None = None
        self.dht: KadDHT | None = None
        """Set once the DHT runs: a dialled peer joins its routing table."""

    def connected_peers(self) -> list[str]:
        """Peer ids with an open connection."""
        return [str(p.to_base58()) for p in self.host.get_connected_peers()]

    def peerstore_addrs(self) -> dict[str, tuple[str, ...]]:
        """Addresses libp2p learned per peer (identify, DHT, mDNS)."""
        from libp2p.peer.peerstore import PeerStoreError

        store = self.host.get_peerstore()
        out: dict[str, tuple[str, ...]] = {}
        for peer in store.peers_with_addrs():
            try:
                out[str(peer.to_base58())] = tuple(str(a) for a in store.addrs(peer))
            except PeerStoreError:
                continue
        return out

    async def connect(self, addr: str, timeout: float = CONNECT_TIMEOUT) -> str:
        """Dial a ``…/p2p/<id>`` multiaddr (shielded, bounded, no scopes: the caller chose it); return the peer id."""
        import multiaddr
        from libp2p.peer.peerinfo import info_from_p2p_addr

        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await self.connect_info(info, timeout)
        return str(info.peer_id.to_base58())

    async def connect_info(self, info: Any, timeout: float = CONNECT_TIMEOUT) -> None:
        """Dial a ``PeerInfo`` (shielded, bounded); raises :class:`BackendUnavailable` on failure."""
        # py-libp2p refuses for 60 s to dial a peer once all its addresses failed (a "negative
        # cache"), even at addresses learned since: a DHT dial to a gateway's unusable 0.0.0.0
        # address blocked the gateway's real address, announced a moment later, for a minute.
        # tooti spaces dials per peer itself (DialBackoff), so each of its dials starts unblocked.
        unblock = getattr(self.host.get_network(), "unblock_peer", None)
        if unblock is not None:
            unblock(info.peer_id)
        if info.addrs:
            # The swarm dials only the first TCP address in the peerstore (its "smart address
            # selection" keeps one per transport class); what identify or the DHT stored before
            # (e.g. a gateway's 0.0.0.0 listen address) would be dialled instead of the address
            # chosen here. So the peerstore holds exactly the chosen addresses for this dial.
            self.host.get_peerstore().clear_addrs(info.peer_id)
        failure: Exception | None = None
        done = False
        with trio.move_on_after(timeout) as scope:
            scope.shield = True  # a cancelled dial can wreck the swarm's state (like py-libp2p bug 1, docs/p2p.md)
            try:
                await self.host.connect(info)
                done = True
            except Exception as exc:  # noqa: BLE001 - libp2p raises assorted types
                failure = exc
        if failure is not None:
            raise BackendUnavailable(f"cannot connect to {info.peer_id}: {type(failure).__name__}: {failure}")
        if not done:
            raise BackendUnavailable(f"connecting to {info.peer_id} timed out")
        if self.dht is not None:
            with trio.move_on_after(timeout):
                await self.dht.add_peer(info.peer_id)

    async def ensure_connected(self, peer: ID) -> None:
        """Dial ``peer`` at the addresses its heartbeat announced when no connection exists yet."""
        if peer in self.host.get_connected_peers():
            return
        name = str(peer.to_base58())
        view = self.registry.get(name)
        announced = list(view.addrs) if view else []
        if not announced:
            from libp2p.peer.peerstore import PeerStoreError

            try:
                announced = [str(a) for a in self.host.get_peerstore().addrs(peer)]
            except PeerStoreError:
                announced = []
        await self.dial(name, announced)

    async def dial(self, peer: str, addrs: Iterable[str]) -> None:
        """Dial ``peer`` at those of ``addrs`` inside the dial scopes, spaced by the per-peer backoff.

        Raises:
            BackendUnavailable: a malformed peer id or address, no address in scope, dialled moments
                ago, or unreachable (the reason is in the message).
        """
        import multiaddr
        from libp2p.peer.id import ID
        from libp2p.peer.peerinfo import PeerInfo

        try:
            peer_id = ID.from_base58(peer)
        except Exception:  # noqa: BLE001 - a malformed id learned from a peer
            self.backoff.failed(peer)
            raise BackendUnavailable(f"invalid peer id {peer[:60]!r}") from None
        announced = list(addrs)
        allowed = self.scopes.filter(announced) if self.scopes is not None else announced
        if not allowed:
            why = "outside the dial scopes" if announced else "known"
            raise BackendUnavailable(f"no address of peer {peer} is {why}")
        if not self.backoff.allow(peer):
            raise BackendUnavailable(
                f"peer {peer} was dialled moments ago; next dial in {self.backoff.wait_left(peer):.1f} s"
            )
        try:
            info = PeerInfo(peer_id, [multiaddr.Multiaddr(a) for a in allowed])
        except Exception as exc:  # noqa: BLE001 - a malformed address learned from a peer
            self.backoff.failed(peer)
            raise BackendUnavailable(f"malformed address of peer {peer}: {type(exc).__name__}") from None
        try:
            await self.connect_info(info, CONNECT_TIMEOUT)
        except BackendUnavailable:
            self.backoff.failed(peer)
            raise
        self.backoff.succeeded(peer)
