"""Keeping a host connected to the mesh, so no single peer (the bootstrap peer included) is a point of failure.

Before this, peers only ever dialled ``bootstrap_peers``: kill the bootstrap peer of an idle network
and a gateway lost every node for good (``/v1/network/nodes`` empty for over 100 s although the
nodes were healthy). Every round (``RuntimeSettings.bootstrap_interval``) the :class:`PeerKeeper`:

1. keeps a connection to every *pinned* peer: the configured ``network.gateways`` and the gateways
   learned from presence records (a node behind NAT is served over exactly these connections);
2. while fewer than ``network.target_peers`` peers are connected, dials more: the bootstrap peers,
   peers saved from earlier runs, nodes heard in heartbeats and peers in the peerstore (identify,
   DHT, mDNS) — the bootstrap list is just one source among others;
3. saves the connected peers' addresses (``network.known_peers_file``), so a restart finds the mesh
   even when every bootstrap peer is gone.

Every dial goes through the dial scopes and the per-peer backoff, so a peer cannot make this host
dial in a loop or outside its scopes. The keeper decides *whom* to dial; it dials through a
:class:`~tooti.p2p.dial_policy.PeerDialer` (:class:`tooti.p2p.dialer.Dialer` in a runtime, a fake in
unit tests) and never touches the libp2p host.
"""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import trio

from tooti.errors import BackendUnavailable
from tooti.p2p.bootstrap import expand_bootstrap, peer_id_of_addr
from tooti.p2p.known_peers import MAX_PEERS, KnownPeer, load_known_peers, save_known_peers

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tooti.p2p.dial_policy import PeerDialer
    from tooti.p2p.presence import GatewayBook
    from tooti.p2p.registry import Registry
    from tooti.p2p.runtime_settings import RuntimeSettings

__all__ = ["MAX_DIALS_PER_ROUND", "PeerKeeper"]

log = logging.getLogger(__name__)

MAX_DIALS_PER_ROUND = 8


def _strip(addr: str) -> str:
    for marker in ("/p2p/", "/ipfs/"):
        if marker in addr:
            return addr.split(marker, 1)[0]
    return addr


class PeerKeeper:
    """The connection-keeping loop of one host (runs in the runtime's trio nursery).

    Args:
        dialer: what dials (scopes, backoff, connected peers).
        own_id: this host's peer id (never dialled).
        settings: bootstrap peers, configured gateways, target count, interval, known peers file.
        registry: nodes heard in heartbeats (their announced addresses are candidates).
        gateways: gateways learned from presence records (pinned).
    """

    def __init__(
        self, dialer: PeerDialer, own_id: str, settings: RuntimeSettings, registry: Registry, gateways: GatewayBook
    ) -> None:
        self.dialer = dialer
        self.own_id = own_id
        self.settings = settings
        self.registry = registry
        self.gateways = gateways
        self.known: dict[str, tuple[str, ...]] = {}
        """Addresses learned for each peer (without ``/p2p``), newest sources first."""
        self._saved: list[KnownPeer] = []

    # -- sources ----------------------------------------------------------------------------------

    def _learn(self, peer: str, addrs: Iterable[str]) -> None:
        if peer == self.own_id:
            return
        stripped = tuple(dict.fromkeys(_strip(a) for a in addrs if a.startswith("/")))
        if stripped:
            self.known[peer] = stripped
        if len(self.known) > 4 * MAX_PEERS:  # bounded: forget the oldest entries
            for stale in list(self.known)[: len(self.known) - 4 * MAX_PEERS]:
                del self.known[stale]

    def _learn_all(self) -> None:
        for peer, addrs in self.dialer.peerstore_addrs().items():
            self._learn(peer, addrs)
        for view in self.registry.snapshot():
            self._learn(view.peer_id, view.addrs)
        for gateway, addrs in self.gateways.gateways().items():
            self._learn(gateway, addrs)

    def pinned(self) -> dict[str, tuple[str, ...]]:
        """Peers to stay connected to whatever the count: configured and learned gateways."""
        out: dict[str, tuple[str, ...]] = {}
        for addr in self.settings.gateways:
            peer = peer_id_of_addr(addr)
            if peer is not None and peer != self.own_id:
                out[peer] = (*out.get(peer, ()), _strip(addr))
        for peer, addrs in self.gateways.gateways().items():
            if peer != self.own_id:
                out.setdefault(peer, tuple(_strip(a) for a in addrs))
        return out

    # -- dialling ---------------------------------------------------------------------------------

    async def _dial(self, peer: str, addrs: Iterable[str], pinned: bool = False) -> bool:
        """One bounded dial through scopes and backoff (:meth:`PeerDialer.dial`); ``True`` when connected."""
        if self.dialer.backoff.wait_left(peer) > 0:
            return False  # quietly: a configured gateway that is down would log every round
        try:
            await self.dialer.dial(peer, addrs)
        except BackendUnavailable as exc:
            log.log(logging.INFO if pinned else logging.DEBUG, "peer %s unreachable: %s", peer, exc.message)
            return False
        return True

    def _worth_dialling(self, peer: str, addrs: tuple[str, ...], connected: set[str]) -> bool:
        """Not connected, not this host, an address in scope, and not backing off."""
        dialer = self.dialer
        if peer in connected or peer == self.own_id or dialer.backoff.wait_left(peer) > 0:
            return False
        return dialer.scopes is None or bool(dialer.scopes.filter(addrs))

    async def _dial_many(self, targets: list[tuple[str, tuple[str, ...]]], *, pinned: bool = False) -> None:
        async with trio.open_nursery() as nursery:
            for peer, addrs in targets[:MAX_DIALS_PER_ROUND]:
                nursery.start_soon(self._dial, peer, addrs, pinned)

    async def round(self) -> None:
        """One maintenance round (see the module docstring)."""
        dialer = self.dialer
        self._learn_all()
        connected = set(dialer.connected_peers())
        pinned = [(p, a) for p, a in self.pinned().items() if p not in connected]
        if pinned:
            await self._dial_many(pinned, pinned=True)
            connected = set(dialer.connected_peers())
        missing = self.settings.target_peers - len(connected)
        if missing > 0:
            candidates: dict[str, tuple[str, ...]] = {}
            bootstrap = await expand_bootstrap(self.settings.bootstrap_peers, self.settings.resolver)
            if dialer.scopes is not None:
                dialer.scopes.trust(bootstrap)  # the operator wrote these
            for addr in bootstrap:
                peer = peer_id_of_addr(addr)
                if peer is not None:
                    candidates[peer] = (*candidates.get(peer, ()), _strip(addr))
            others = [p for p in self.known if p not in candidates]
            random.shuffle(others)  # spread the mesh instead of everyone dialling the same peers
            for peer in others:
                candidates[peer] = self.known[peer]
            todo = [(p, a) for p, a in candidates.items() if self._worth_dialling(p, a, connected)]
            await self._dial_many(todo[: min(missing, MAX_DIALS_PER_ROUND)])
        self.save()

    async def bootstrap_once(self) -> int:
        """Dial every bootstrap peer not yet connected; return how many are connected."""
        addrs = await expand_bootstrap(self.settings.bootstrap_peers, self.settings.resolver)
        if self.dialer.scopes is not None:
            self.dialer.scopes.trust(addrs)  # the operator wrote these
        connected = set(self.dialer.connected_peers())
        ok = 0
        for addr in addrs:
            peer = peer_id_of_addr(addr)
            if peer == self.own_id:
                continue
            if peer in connected:
                ok += 1
                continue
            try:
                await self.dialer.connect(addr)
                ok += 1
            except BackendUnavailable as exc:
                log.info("bootstrap peer %s unreachable: %s", addr, exc.message)
        return ok

    # -- persistence ------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the known peers file (if any) into :attr:`known`."""
        path = self.settings.known_peers_file
        if path is None:
            return
        saved = load_known_peers(path)
        for peer in reversed(saved):  # the file's first entry ends up newest
            self._learn(peer.id, peer.addrs)
        self._saved = saved
        if saved:
            log.info("loaded %d known peer(s) from %s", len(saved), path)

    def save(self) -> None:
        """Write the connected peers first, then the other remembered ones, when that list changed."""
        path = self.settings.known_peers_file
        if path is None:
            return
        connected = self.dialer.connected_peers()
        order = [p for p in connected if p in self.known]
        order += [p.id for p in self._saved if p.id not in order and p.id in self.known]
        peers = [KnownPeer(p, self.known[p]) for p in order][:MAX_PEERS]
        if peers != self._saved:
            save_known_peers(path, peers)
            self._saved = peers

    async def run(self) -> None:
        """Rounds until cancelled; the last known peers are saved on the way out."""
        self.load()
        try:
            while True:
                await self.round()
                await trio.sleep(self.settings.bootstrap_interval)
        finally:
            self.save()
