"""Enforcing peer bans in libp2p: refused at the handshake, blacklisted in pubsub, disconnected.

Which peers are banned and until when is :mod:`tooti.p2p.peer_bans` (no libp2p there); this is
what a ban does to the host.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from tooti.p2p.peer_bans import PeerBans

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from libp2p.peer.id import ID
    from libp2p.pubsub.pubsub import Pubsub
    from trio_typing import TaskStatus

__all__ = ["BanGate"]

log = logging.getLogger(__name__)

DISCONNECT_TIMEOUT = 5.0


class BanGate:
    """Applies :class:`PeerBans` to one host; installs its handshake gate on construction.

    Args:
        host: the libp2p host (not yet listening).
        bans: the ban list; a fresh one when not given.
    """

    def __init__(self, host: IHost, bans: PeerBans | None = None) -> None:
        self.host = host
        self.bans = bans if bans is not None else PeerBans()
        self.pubsub: Pubsub | None = None
        self._nursery: trio.Nursery | None = None
        _refuse_banned_peers(host, self.bans)

    def ban(self, raw: bytes) -> None:
        """Ban a flooding signer: drop its messages unread, close its connections."""
        from libp2p.peer.id import ID

        if not self.bans.ban(raw):
            return
        peer = ID(raw)
        log.warning("banned peer %s for %.0f s: heartbeat flood", peer.to_base58(), self.bans.ban_sec)
        if self.pubsub is not None:
            self.pubsub.add_to_blacklist(peer)
        if self._nursery is not None:
            self._nursery.start_soon(self._disconnect, peer)

    async def _disconnect(self, peer: ID) -> None:
        """Close every connection with ``peer`` (best effort, bounded)."""
        with trio.move_on_after(DISCONNECT_TIMEOUT):
            try:
                await self.host.disconnect(peer)
            except Exception as exc:  # noqa: BLE001 - the peer may be gone already
                log.debug("disconnecting %s failed: %s", peer, type(exc).__name__)

    async def serve(
        self, pubsub: Pubsub, interval: float, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run until cancelled (``started`` once bans take effect): disconnect banned peers, lift ended bans."""
        from libp2p.peer.id import ID

        self.pubsub = pubsub
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                while True:
                    await trio.sleep(interval)
                    for raw in self.bans.expire():
                        pubsub.remove_from_blacklist(ID(raw))
        finally:
            self._nursery = None


def _refuse_banned_peers(host: IHost, bans: PeerBans) -> None:
    """Close a connection from a banned peer right after the security handshake names it.

    py-libp2p 0.8.1 has no peer-id connection gate (its gate filters IP addresses, and one
    address may hold honest peers too). Refusing here, before the muxer, identify, pubsub and the
    DHT see the connection, keeps a banned peer's redial at the cost of one Noise handshake; a
    notifee on ``connected`` ran after all of those (about 30 ms of gateway CPU per redial).
    """
    from libp2p.transport.exceptions import SecurityUpgradeFailure

    upgrader = host.get_network().upgrader  # type: ignore[attr-defined]
    secure = upgrader.upgrade_security

    async def upgrade_security(raw_conn: Any, is_initiator: bool, peer_id: ID | None = None) -> Any:
        conn = await secure(raw_conn, is_initiator, peer_id)
        if bans.banned(conn.get_remote_peer().to_bytes()):
            await conn.close()
            raise SecurityUpgradeFailure("peer is banned")
        return conn

    upgrader.upgrade_security = upgrade_security
