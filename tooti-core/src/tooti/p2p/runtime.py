"""The trio p2p runtime: one libp2p host and the parts that run on it, composed and started together.

Each concern is its own part; the runtime only wires them and owns the lifecycle:

- host and listeners: :mod:`tooti.p2p.libp2p_host` (host, pubsub and DHT built with tooti's
  workarounds; the transport-level dial gate);
- dialling: :class:`tooti.p2p.dialer.Dialer` (scopes, backoff), kept connected to the mesh by
  :class:`tooti.p2p.peer_keeper.PeerKeeper`, which sees the dialer only as a
  :class:`tooti.p2p.dial_policy.PeerDialer`;
- heartbeats: :class:`tooti.p2p.heartbeat_topic.HeartbeatTopic` (validator, publish, pruning);
- gateway presence: :class:`tooti.p2p.presence_topic.PresenceTopic`;
- bans: :class:`tooti.p2p.ban_gate.BanGate`;
- DHT provider records: :mod:`tooti.p2p.dht`; inference streams: :mod:`tooti.p2p.infer_client`
  and :mod:`tooti.p2p.infer_server`.

Every method must be called from the runtime's trio loop.
"""

from __future__ import annotations

from contextlib import aclosing
from typing import TYPE_CHECKING, Any, Literal

import trio

from tooti.errors import BackendUnavailable
from tooti.p2p import dht as provider_records
from tooti.p2p._libp2p import prepare_libp2p
from tooti.p2p.addrs import dialable_addrs, interface_ips
from tooti.p2p.ban_gate import BanGate
from tooti.p2p.dial_policy import DialScopes, default_scopes
from tooti.p2p.dialer import CONNECT_TIMEOUT, Dialer
from tooti.p2p.heartbeat_topic import HeartbeatTopic
from tooti.p2p.infer_client import request_frames
from tooti.p2p.libp2p_host import DialTracker, ListenError, build_host, build_services
from tooti.p2p.peer_keeper import PeerKeeper
from tooti.p2p.presence import GatewayBook
from tooti.p2p.presence_topic import PresenceTopic
from tooti.p2p.registry import Registry
from tooti.p2p.runtime_settings import RuntimeSettings, settings_from_config
from tooti.p2p.stream_pool import StreamPool
from tooti.wire.infer import PROTOCOL_ID

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator

    from libp2p.abc import IHost
    from libp2p.crypto.keys import KeyPair
    from libp2p.kad_dht.kad_dht import KadDHT
    from libp2p.peer.id import ID
    from libp2p.pubsub.pubsub import Pubsub
    from trio_typing import TaskStatus

    from tooti.p2p.dial_policy import DialBackoff
    from tooti.p2p.infer_server import InferService
    from tooti.p2p.peer_bans import PeerBans
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["CONNECT_TIMEOUT", "ListenError", "P2PRuntime", "RuntimeSettings", "settings_from_config"]


class P2PRuntime:
    """Owns the host and the parts on it; every method must be called from the runtime's trio loop.

    Args:
        key_pair: the process identity.
        settings: listen address, bootstrap peers, intervals.
        service: the inference server (nodes); ``None`` for a gateway.
        registry: where validated heartbeats go; one is created when not given.
    """

    def __init__(
        self,
        key_pair: KeyPair,
        settings: RuntimeSettings,
        *,
        service: InferService | None = None,
        registry: Registry | None = None,
    ) -> None:
        from libp2p.peer.id import ID

        prepare_libp2p()
        self.key_pair = key_pair
        self.settings = settings
        self.service = service
        self.registry = registry if registry is not None else Registry(settings.heartbeat_interval)
        self.id: ID = ID.from_pubkey(key_pair.public_key)
        self.peer_id = str(self.id.to_base58())
        self.host: IHost = build_host(key_pair, settings.mdns)
        self._dials = DialTracker(self.host)
        self.ban_gate = BanGate(self.host)
        self.dialer = Dialer(self.host, self.registry)
        self.streams = StreamPool()
        self.gateways = GatewayBook(settings.heartbeat_interval)
        self.heartbeats = HeartbeatTopic(self.registry, self.peer_id, self.ban_gate.ban)
        self.presence = PresenceTopic(self.gateways, self.peer_id)
        self.keeper = PeerKeeper(self.dialer, self.peer_id, settings, self.registry, self.gateways)
        self.pubsub: Pubsub | None = None
        self.dht: KadDHT | None = None
        self._outer: trio.CancelScope | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; ``task_status.started()`` once listening with pubsub and DHT up.

        The host lives in a shielded scope so that cancelling :meth:`run` first closes the host
        while its connection tasks still run (closing after they were cancelled leaked every
        outbound socket), and only then cancels them.
        """
        guard = trio.CancelScope(shield=True)
        async with trio.open_nursery() as nursery:
            self._outer = nursery.cancel_scope
            await nursery.start(self._guarded, guard)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await self.host.close()
                guard.cancel()

    async def _guarded(self, guard: trio.CancelScope, *, task_status: TaskStatus[None]) -> None:
        import multiaddr

        listen = multiaddr.Multiaddr(f"/ip4/{self.settings.listen_host}/tcp/{self.settings.tcp_port}")
        with guard:
            async with self.host.run(listen_addrs=[listen]):
                try:
                    await self._serve(task_status)
                finally:
                    # py-libp2p bug 5 (docs/p2p.md): leaving run() without host.close() leaks the listener.
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await self.host.close()
                        await self._dials.close_all()

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        from libp2p.tools.anyio_service import background_trio_service

        if not self.host.get_transport_addrs():
            # py-libp2p logs a failed listen and carries on without a listener; we refuse to.
            where = f"{self.settings.listen_host}:{self.settings.tcp_port}"
            raise ListenError(f"cannot listen on {where} (address in use or not local)")
        settings = self.settings
        scopes = DialScopes.parse(settings.dial_scopes or default_scopes(settings.listen_host, interface_ips()))
        scopes.trust(self.settings.gateways)  # the operator wrote these
        self._dials.scopes = self.dialer.scopes = scopes
        pubsub, gossipsub, dht = build_services(self.host)
        async with (
            trio.open_nursery() as nursery,
            background_trio_service(pubsub),
            background_trio_service(gossipsub),
            background_trio_service(dht),
        ):
            await pubsub.wait_until_ready()
            self.pubsub, self.dht, self.dialer.dht = pubsub, dht, dht
            if self.service is not None:
                self.host.set_stream_handler(PROTOCOL_ID, self.service.handle)  # type: ignore[arg-type]
            await nursery.start(self.ban_gate.serve, pubsub, self.settings.heartbeat_interval)
            await nursery.start(self.heartbeats.serve, pubsub)
            await nursery.start(self.presence.serve, pubsub)
            nursery.start_soon(self.heartbeats.prune_loop, self.settings.heartbeat_interval)
            nursery.start_soon(self.keeper.run)
            if self.settings.publish_presence:
                nursery.start_soon(
                    self.presence.publish_loop, pubsub, self.listen_addrs, self.settings.heartbeat_interval
                )
            task_status.started()
            await trio.sleep_forever()

    def stop(self) -> None:
        """Cancel :meth:`run` (from the runtime's own loop)."""
        if self._outer is not None:
            self._outer.cancel()

    # -- the parts, for callers and tests -------------------------------------------------------

    @property
    def bans(self) -> PeerBans:
        """Peers banned for flooding (:mod:`tooti.p2p.peer_bans`)."""
        return self.ban_gate.bans

    @property
    def backoff(self) -> DialBackoff:
        """The per-peer dial spacing."""
        return self.dialer.backoff

    @property
    def scopes(self) -> DialScopes | None:
        """The dial scopes; ``None`` until the host listens."""
        return self.dialer.scopes

    @property
    def dials_refused(self) -> int:
        """Dials refused at the transport because the address was outside the dial scopes."""
        return self._dials.refused

    # -- addresses and peers --------------------------------------------------------------------

    def listen_addrs(self) -> list[str]:
        """Dialable multiaddrs of this host, each ending in ``/p2p/<peer id>``.

        With ``announce_addrs`` set (port forwarding, a public address), those instead.
        """
        if self.settings.announce_addrs:
            return [a if "/p2p/" in a else f"{a}/p2p/{self.peer_id}" for a in self.settings.announce_addrs]
        return dialable_addrs([str(a) for a in self.host.get_addrs()])

    def connected_peers(self) -> list[str]:
        """Peer ids with an open connection."""
        return self.dialer.connected_peers()

    def remote_host(self, peer_id: str) -> str | None:
        """The IP address of the socket behind the first live connection to ``peer_id``, or ``None``.

        Read from the transport (the TCP peer address), never from addresses the peer announces.
        Safe to call from another thread: it copies the swarm's connection list and reads each
        connection's cached remote address, no I/O.
        """
        from libp2p.peer.id import ID

        try:
            conns = self.host.get_network().get_connections(ID.from_base58(peer_id))
        except Exception:  # noqa: BLE001 - a malformed peer id: nothing is connected under it
            return None
        for conn in conns:
            # Yamux and Mplex both expose the socket's peer address; the IMuxedConn ABC does not declare it.
            get_remote = getattr(conn.muxed_conn, "get_remote_address", None)
            remote = get_remote() if get_remote is not None else None
            if remote is not None:
                return str(remote[0])
        return None

    def connection_direction(self, peer_id: str) -> Literal["inbound", "outbound"] | None:
        """Which side opened the live connection to ``peer_id``, or ``None`` (not connected, not recorded).

        ``"outbound"``: this host dialled the peer; ``"inbound"``: the peer dialled this host.

        Read from the swarm's own record of each connection (set when it dialled or accepted),
        never from anything the peer says. With several connections, one this host dialled wins:
        it proves this host can reach the peer. Safe to call from another thread like
        :meth:`remote_host`: it copies the connection list and reads an attribute, no I/O.
        """
        from libp2p.peer.id import ID
        from libp2p.rcmgr.metrics import Direction

        try:
            conns = list(self.host.get_network().get_connections(ID.from_base58(peer_id)))
        except Exception:  # noqa: BLE001 - a malformed peer id: nothing is connected under it
            return None
        directions = {getattr(conn, "direction", Direction.UNKNOWN) for conn in conns}
        if Direction.OUTBOUND in directions:
            return "outbound"
        if Direction.INBOUND in directions:
            return "inbound"
        return None

    def protocols(self) -> list[str]:
        """Protocol ids this host answers (for tests of the DHT prefix patch)."""
        return [str(p) for p in self.host.get_mux().get_protocols() if p is not None]

    async def connect(self, addr: str, timeout: float = CONNECT_TIMEOUT) -> str:
        """Dial a ``…/p2p/<id>`` multiaddr (shielded, bounded); return the peer id."""
        return await self.dialer.connect(addr, timeout)

    async def connect_info(self, info: Any, timeout: float = CONNECT_TIMEOUT) -> None:
        """Dial a ``PeerInfo`` (shielded, bounded); raises :class:`BackendUnavailable` on failure."""
        await self.dialer.connect_info(info, timeout)

    async def bootstrap_once(self) -> int:
        """Dial every bootstrap peer not yet connected; return how many are connected."""
        return await self.keeper.bootstrap_once()

    # -- heartbeats and the DHT -------------------------------------------------------------------

    async def publish(self, data: bytes) -> None:
        """Publish an encoded heartbeat on the heartbeat topic."""
        await self.heartbeats.publish(data)

    async def provide(self, model: str) -> bool:
        """Announce in the DHT that this host serves ``model``."""
        if self.dht is None:
            raise RuntimeError("runtime not started")
        return await provider_records.provide(self.dht, model)

    async def find_providers(self, model: str, count: int = 20) -> list[str]:
        """Peer ids with a provider record for ``model`` (deduplicated; may include dead nodes)."""
        if self.dht is None:
            raise RuntimeError("runtime not started")
        return await provider_records.find_providers(self.dht, model, count)

    # -- inference --------------------------------------------------------------------------------

    async def request(self, peer_id: str, request: InferRequest) -> AsyncGenerator[ResponseFrame, None]:
        """Send ``request`` to ``peer_id``; yields frames (see :func:`request_frames`)."""
        from libp2p.peer.id import ID

        try:
            peer = ID.from_base58(peer_id)
        except Exception as exc:
            raise BackendUnavailable(f"invalid peer id {peer_id!r}") from exc
        await self.dialer.ensure_connected(peer)
        async with aclosing(request_frames(self.host, peer, request, pool=self.streams)) as frames:
            async for frame in frames:
                yield frame
