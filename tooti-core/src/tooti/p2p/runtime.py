"""The trio p2p runtime: one libp2p host with gossipsub heartbeats, the private DHT and inference.

Transports: TCP + Noise + yamux only (QUIC is unreliable in py-libp2p 0.8.1). Workarounds applied
(see docs/p2p.md): ``max_connections_per_peer=1`` (250 ms per dial otherwise), shielded stream
open/close, ``host.close()`` in ``finally`` (listener leak), the ``/tooti/kad/1.0.0`` protocol
patch, and a raised gossipsub spam limit (heartbeats relayed by few peers were dropped).
"""

from __future__ import annotations

import logging
import weakref
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from tooti.errors import BackendUnavailable, TootiError
from tooti.p2p._libp2p import prepare_libp2p
from tooti.p2p.addrs import dialable_addrs, interface_ips
from tooti.p2p.bootstrap import TxtResolver, dns_txt_resolver, expand_bootstrap, peer_id_of_addr
from tooti.p2p.dht import model_cid
from tooti.p2p.dial_policy import DialBackoff, DialScopes, default_scopes
from tooti.p2p.heartbeat import HEARTBEAT_TOPIC
from tooti.p2p.infer_client import request_frames
from tooti.p2p.peer_bans import PeerBans
from tooti.p2p.peer_keeper import PeerKeeper
from tooti.p2p.presence import (
    PRESENCE_TOPIC,
    GatewayBook,
    GatewayPresence,
    PresenceError,
    decode_presence,
    encode_presence,
)
from tooti.p2p.registry import Registry
from tooti.p2p.stream_pool import StreamPool
from tooti.wire.infer import PROTOCOL_ID

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, Iterable

    from libp2p.abc import IHost
    from libp2p.crypto.keys import KeyPair
    from libp2p.kad_dht.kad_dht import KadDHT
    from libp2p.peer.id import ID
    from libp2p.pubsub.pubsub import Pubsub
    from trio_typing import TaskStatus

    from tooti.config.model import Config
    from tooti.p2p.infer_server import InferService
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["ListenError", "P2PRuntime", "RuntimeSettings", "settings_from_config"]

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
DHT_TIMEOUT = 5.0
GOSSIP_SPAM_LIMIT = 1000.0


class ListenError(TootiError):
    """The host could not listen on the configured address (port in use, no such interface)."""


@dataclass
class RuntimeSettings:
    """What a runtime listens on and whom it dials."""

    listen_host: str = "127.0.0.1"
    tcp_port: int = 0
    bootstrap_peers: list[str] = field(default_factory=list)
    heartbeat_interval: float = 5.0
    bootstrap_interval: float = 30.0
    mdns: bool = False
    dial_scopes: list[str] = field(default_factory=list)
    """Address scopes peers' addresses are dialled in (see :mod:`tooti.p2p.dial_policy`); empty = default."""
    target_peers: int = 8
    """Connections the peer keeper maintains (pinned gateways come on top)."""
    known_peers_file: Path | None = None
    """Where the peers this host knew are saved between runs; ``None`` = not saved."""
    gateways: list[str] = field(default_factory=list)
    """Gateways (``…/p2p/<id>``) this host always keeps a connection to (a node behind NAT is served over it)."""
    announce_addrs: list[str] = field(default_factory=list)
    """Addresses announced instead of the listen addresses (port forwarding, a public IP); empty = listen addresses."""
    publish_presence: bool = False
    """Publish gateway presence records (gateways), so nodes learn to keep a connection to this host."""
    resolver: TxtResolver = dns_txt_resolver


def settings_from_config(
    config: Config, *, identity_file: Path | None = None, gateway: bool = False
) -> RuntimeSettings:
    """Runtime settings from a config's ``listen``, ``network`` and ``heartbeat`` sections.

    Args:
        config: the whole config.
        identity_file: the host's key file; known peers are saved next to it (``<stem>.peers.json``)
            unless ``network.known_peers_file`` names another file. Without either, nothing is saved.
        gateway: the host is a gateway: it publishes presence records.
    """
    known: Path | None = None
    if config.network.remember_peers:
        if config.network.known_peers_file:
            known = Path(config.network.known_peers_file).expanduser()
        elif identity_file is not None:
            known = identity_file.with_suffix(".peers.json")
    return RuntimeSettings(
        known_peers_file=known,
        publish_presence=gateway,
        listen_host=config.listen.host,
        tcp_port=config.listen.tcp_port,
        bootstrap_peers=list(config.network.bootstrap_peers),
        heartbeat_interval=config.heartbeat.interval_sec,
        bootstrap_interval=min(30.0, max(1.0, 2 * config.heartbeat.interval_sec)),
        mdns=config.network.mdns,
        dial_scopes=list(config.network.dial_scopes),
        target_peers=config.network.target_peers,
        gateways=list(config.network.gateways),
        announce_addrs=list(config.listen.announce_addrs),
    )


def _build_host(key_pair: KeyPair, mdns: bool) -> IHost:
    from libp2p import new_host
    from libp2p.crypto.x25519 import X25519PrivateKey
    from libp2p.custom_types import TProtocol
    from libp2p.network.config import ConnectionConfig
    from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
    from libp2p.security.noise.transport import Transport as Noise
    from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_ID
    from libp2p.stream_muxer.yamux.yamux import Yamux

    host = new_host(
        key_pair=key_pair,
        sec_opt={TProtocol(NOISE_ID): Noise(libp2p_keypair=key_pair, noise_privkey=X25519PrivateKey.new())},
        muxer_opt={TProtocol(YAMUX_ID): Yamux},
        connection_config=ConnectionConfig(max_connections_per_peer=1),
        enable_mDNS=mdns,
    )
    _disable_auto_connector(host)
    _no_dial_retries(host)
    return host


def _no_dial_retries(host: IHost) -> None:
    """Make one dial one attempt: the swarm otherwise retries 3 times (0.1 + 0.2 + 0.4 s of sleeps).

    Measured: a request to a peer whose announced address is dead spent ~0.7 s in the swarm's retry
    sleeps before the gateway could fail over, and a rogue address was dialled 4 times per request.
    tooti spaces its own dials per peer (:class:`~tooti.p2p.dial_policy.DialBackoff`).
    """
    from libp2p.network.config import RetryConfig

    network = host.get_network()
    if hasattr(network, "retry_config"):
        network.retry_config = RetryConfig(max_retries=0)


class _DialTracker:
    """Every outbound TCP dial of the host passes here: refused outside the dial scopes, remembered.

    The scope check sits at the transport so that it covers every dial py-libp2p makes on a peer's
    word — heartbeat addresses, identify, DHT answers — not only tooti's own. Remembering the raw
    connections lets shutdown close any that libp2p left open: measured with py-libp2p 0.8.1, when
    several hosts close at once the swarm's close sometimes never reaches an outbound socket
    (ResourceWarning: unclosed socket).
    """

    def __init__(self, host: IHost) -> None:
        self.scopes: DialScopes | None = None
        self.refused = 0
        self.raw: weakref.WeakSet[Any] = weakref.WeakSet()
        manager = getattr(host.get_network(), "transport_manager", None)
        for transport in manager.get_transports() if manager is not None else ():
            self._wrap(transport)

    def _wrap(self, transport: Any) -> None:
        dial = transport.dial

        async def tracked_dial(maddr: Any, *args: Any, **kwargs: Any) -> Any:
            if self.scopes is not None and not self.scopes.allows(str(maddr)):
                from libp2p.transport.exceptions import OpenConnectionError

                self.refused += 1
                log.info("not dialling %s: outside the dial scopes (%s)", maddr, self.scopes.describe())
                raise OpenConnectionError("address outside the dial scopes")
            conn = await dial(maddr, *args, **kwargs)
            self.raw.add(conn)
            return conn

        transport.dial = tracked_dial

    async def close_all(self) -> None:
        """Close every tracked raw connection (closing a closed one is a no-op); never raises."""
        for conn in list(self.raw):
            with trio.move_on_after(1) as scope:
                scope.shield = True
                try:
                    await conn.close()
                except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                    log.debug("raw connection close failed: %s", type(exc).__name__)


async def _no_auto_connect() -> None:
    return None


INVALID_DECAY = 0.9
"""Per-second decay of a peer's count of refused heartbeats in its gossipsub score."""
PUBLISH_THRESHOLD = -100.0
"""Gossipsub score below which a peer's messages are dropped unread (about 10 refused a second)."""


def _disable_auto_connector(host: IHost) -> None:
    """Stop the swarm's auto-connector from dialling every peerstore peer (up to 200 dials).

    It redials peers it heard of (even a node that just left, and during shutdown, which leaked
    sockets in our tests). tooti keeps its connections with its own bootstrap loop and on-demand dials.
    """
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is not None:
        connector.maybe_connect = _no_auto_connect


def _score_params() -> Any:
    """Gossipsub peer scoring that cuts off a forwarder of many refused messages.

    py-libp2p 0.8.1 scores only what its router sees: each message our validator refuses counts
    against the peer that forwarded it (P4), decaying by :data:`INVALID_DECAY` per gossipsub
    heartbeat (1 s), and a peer whose score falls below :data:`PUBLISH_THRESHOLD` has its messages
    dropped before the signature check and before our validator (so they cost almost nothing and
    are no longer counted by the registry). Honest peers run the same validator and never forward
    what it refuses, so their score stays at 0. The app-specific score (P6) is not applied by this
    version's single-topic publish gate, so the rate limit itself lives in our validator.
    """
    from libp2p.pubsub.score import ScoreParams, TopicScoreParams

    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(weight=1.0, cap=10_000.0, decay=INVALID_DECAY),
        publish_threshold=PUBLISH_THRESHOLD,
    )


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


class P2PRuntime:
    """Owns the host and everything on it; every method must be called from the runtime's trio loop.

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
        self.host: IHost = _build_host(key_pair, settings.mdns)
        self._dials = _DialTracker(self.host)
        self.backoff = DialBackoff()
        self.streams = StreamPool()
        self.pubsub: Pubsub | None = None
        self.dht: KadDHT | None = None
        self.scopes: DialScopes | None = None
        self.gateways = GatewayBook(settings.heartbeat_interval)
        self.keeper = PeerKeeper(self)
        self.bans = PeerBans()
        _refuse_banned_peers(self.host, self.bans)
        self._nursery: trio.Nursery | None = None
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
                    self._nursery = None
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await self.host.close()
                        await self._dials.close_all()

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        from libp2p.tools.anyio_service import background_trio_service

        if not self.host.get_transport_addrs():
            # py-libp2p logs a failed listen and carries on without a listener; we refuse to.
            where = f"{self.settings.listen_host}:{self.settings.tcp_port}"
            raise ListenError(f"cannot listen on {where} (address in use or not local)")
        self._dials.scopes = self.scopes = DialScopes.parse(
            self.settings.dial_scopes or default_scopes(self.settings.listen_host, interface_ips())
        )
        self.scopes.trust(self.settings.gateways)  # the operator wrote these
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            pubsub, gossipsub, dht = self._build_services()
            async with (
                background_trio_service(pubsub),
                background_trio_service(gossipsub),
                background_trio_service(dht),
            ):
                await pubsub.wait_until_ready()
                self.pubsub, self.dht = pubsub, dht
                if self.service is not None:
                    self.host.set_stream_handler(PROTOCOL_ID, self.service.handle)  # type: ignore[arg-type]
                pubsub.set_topic_validator(HEARTBEAT_TOPIC, self._validate, is_async_validator=False)
                subscription = await pubsub.subscribe(HEARTBEAT_TOPIC)
                nursery.start_soon(self._consume, subscription)
                pubsub.set_topic_validator(PRESENCE_TOPIC, self._validate_presence, is_async_validator=False)
                nursery.start_soon(self._consume, await pubsub.subscribe(PRESENCE_TOPIC))
                nursery.start_soon(self._prune_loop)
                nursery.start_soon(self.keeper.run)
                if self.settings.publish_presence:
                    nursery.start_soon(self._presence_loop)
                task_status.started()
                await trio.sleep_forever()

    def _build_services(self) -> tuple[Pubsub, Any, KadDHT]:
        from libp2p.custom_types import TProtocol
        from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
        from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
        from libp2p.pubsub.pubsub import Pubsub

        gossipsub = GossipSub(
            score_params=_score_params(),
            protocols=[TProtocol(PROTOCOL_ID_V11), TProtocol(PROTOCOL_ID)],
            degree=6,
            degree_low=4,
            degree_high=12,
            heartbeat_interval=1,
            max_messages_per_topic_per_second=GOSSIP_SPAM_LIMIT,
        )
        pubsub = Pubsub(self.host, gossipsub, strict_signing=True)
        dht = KadDHT(self.host, DHTMode.SERVER)
        return pubsub, gossipsub, dht

    @property
    def dials_refused(self) -> int:
        """Dials refused because the address was outside the dial scopes."""
        return self._dials.refused

    def stop(self) -> None:
        """Cancel :meth:`run` (from the runtime's own loop)."""
        if self._outer is not None:
            self._outer.cancel()

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
        return [str(p.to_base58()) for p in self.host.get_connected_peers()]

    def protocols(self) -> list[str]:
        """Protocol ids this host answers (for tests of the DHT prefix patch)."""
        return [str(p) for p in self.host.get_mux().get_protocols() if p is not None]

    async def connect(self, addr: str, timeout: float = CONNECT_TIMEOUT) -> str:
        """Dial a ``…/p2p/<id>`` multiaddr (shielded, bounded); return the peer id."""
        import multiaddr
        from libp2p.peer.peerinfo import info_from_p2p_addr

        info = info_from_p2p_addr(multiaddr.Multiaddr(addr))
        await self._connect_info(info, timeout)
        return str(info.peer_id.to_base58())

    async def connect_info(self, info: Any, timeout: float = CONNECT_TIMEOUT) -> None:
        """Dial a ``PeerInfo`` (shielded, bounded); raises :class:`BackendUnavailable` on failure."""
        await self._connect_info(info, timeout)

    async def _connect_info(self, info: Any, timeout: float) -> None:
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

    async def _ensure_connected(self, peer: ID) -> None:
        """Dial ``peer`` at the addresses its heartbeat announced when no connection exists yet."""
        if peer in self.host.get_connected_peers():
            return
        view = self.registry.get(str(peer.to_base58()))
        announced = list(view.addrs) if view else []
        if not announced:
            from libp2p.peer.peerstore import PeerStoreError

            try:
                announced = [str(a) for a in self.host.get_peerstore().addrs(peer)]
            except PeerStoreError:
                announced = []
        await self.dial(peer, announced)

    async def dial(self, peer: ID, addrs: Iterable[str]) -> None:
        """Dial ``peer`` at those of ``addrs`` inside the dial scopes, spaced by the per-peer backoff.

        The one dial procedure for requests (:meth:`_ensure_connected`) and the peer keeper.

        Raises:
            BackendUnavailable: no address in scope, dialled moments ago, or unreachable (the reason
                is in the message).
        """
        import multiaddr
        from libp2p.peer.peerinfo import PeerInfo

        name = str(peer.to_base58())
        announced = list(addrs)
        allowed = self.scopes.filter(announced) if self.scopes is not None else announced
        if not allowed:
            why = "outside the dial scopes" if announced else "known"
            raise BackendUnavailable(f"no address of peer {peer} is {why}")
        if not self.backoff.allow(name):
            raise BackendUnavailable(
                f"peer {peer} was dialled moments ago; next dial in {self.backoff.wait_left(name):.1f} s"
            )
        try:
            info = PeerInfo(peer, [multiaddr.Multiaddr(a) for a in allowed])
        except Exception as exc:  # noqa: BLE001 - a malformed address learned from a peer
            self.backoff.failed(name)
            raise BackendUnavailable(f"malformed address of peer {peer}: {type(exc).__name__}") from None
        try:
            await self._connect_info(info, CONNECT_TIMEOUT)
        except BackendUnavailable:
            self.backoff.failed(name)
            raise
        self.backoff.succeeded(name)

    # -- heartbeats -----------------------------------------------------------------------------

    def _validate(self, forwarder: ID, message: Any) -> bool:
        """Gossipsub topic validator: the one place a heartbeat is decoded, checked and recorded.

        Refused heartbeats (over the sender's rate limit, malformed, out of bounds, spoofed) are
        neither recorded nor forwarded, and count as invalid messages in the forwarder's gossipsub
        score, so a peer that keeps flooding is cut off by libp2p before signature checks.
        """
        from libp2p.peer.id import ID

        def signer() -> str:
            return str(ID(message.from_id).to_base58())

        if self.registry.receive(message.data, signer, sender=message.from_id, own=self.peer_id):
            return True
        if self.registry.rate_limit.flooding(message.from_id):
            self._ban(bytes(message.from_id))
        return False

    def _ban(self, raw: bytes) -> None:
        """Ban a flooding signer: drop its messages unread, close its connections (``peer_bans``)."""
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
        with trio.move_on_after(CONNECT_TIMEOUT):
            try:
                await self.host.disconnect(peer)
            except Exception as exc:  # noqa: BLE001 - the peer may be gone already
                log.debug("disconnecting %s failed: %s", peer, type(exc).__name__)

    async def _consume(self, subscription: Any) -> None:
        """Drain the subscription: the validator already recorded every accepted heartbeat."""
        while True:
            await subscription.get()

    async def publish(self, data: bytes) -> None:
        """Publish an encoded heartbeat on the heartbeat topic."""
        if self.pubsub is None:
            raise RuntimeError("runtime not started")
        await self.pubsub.publish(HEARTBEAT_TOPIC, data)

    def _validate_presence(self, forwarder: ID, message: Any) -> bool:
        """Topic validator of gateway presence records: signed by the gateway they name, bounded."""
        from libp2p.peer.id import ID

        try:
            record = decode_presence(message.data, str(ID(message.from_id).to_base58()))
        except PresenceError as exc:
            self.gateways.refused += 1
            log.info("dropped presence record via %s: %s", forwarder, exc)
            return False
        if record.peer_id != self.peer_id:
            if record.peer_id not in self.gateways.gateways():
                log.info("heard of gateway %s at %s", record.peer_id, ", ".join(record.addrs))
            self.gateways.record(record)
        return True

    async def _presence_loop(self) -> None:
        """Gateways: say every heartbeat interval that this host is a gateway and where to dial it."""
        import time

        while True:
            if self.pubsub is not None:
                record = GatewayPresence(
                    peer_id=self.peer_id, addrs=tuple(self.listen_addrs()), timestamp_ms=int(time.time() * 1000)
                )
                await self.pubsub.publish(PRESENCE_TOPIC, encode_presence(record))
            await trio.sleep(self.settings.heartbeat_interval)

    async def _prune_loop(self) -> None:
        from libp2p.peer.id import ID

        while True:
            await trio.sleep(self.settings.heartbeat_interval)
            for peer in self.registry.prune():
                log.info("node %s went stale", peer)
            for raw in self.bans.expire():
                if self.pubsub is not None:
                    self.pubsub.remove_from_blacklist(ID(raw))

    # -- bootstrap ------------------------------------------------------------------------------

    async def bootstrap_once(self) -> int:
        """Dial every bootstrap peer not yet connected; return how many are connected."""
        addrs = await expand_bootstrap(self.settings.bootstrap_peers, self.settings.resolver)
        if self.scopes is not None:
            self.scopes.trust(addrs)  # the operator wrote these
        connected = set(self.connected_peers())
        ok = 0
        for addr in addrs:
            peer = peer_id_of_addr(addr)
            if peer == self.peer_id:
                continue
            if peer in connected:
                ok += 1
                continue
            try:
                await self.connect(addr)
                ok += 1
            except BackendUnavailable as exc:
                log.info("bootstrap peer %s unreachable: %s", addr, exc.message)
        return ok

    # -- DHT --------------------------------------------------------------------------------------

    async def provide(self, model: str) -> bool:
        """Announce in the DHT that this host serves ``model``."""
        if self.dht is None:
            raise RuntimeError("runtime not started")
        provided = False
        with trio.move_on_after(DHT_TIMEOUT) as scope:
            scope.shield = True  # a DHT query cancelled mid-dial can leak its socket
            provided = bool(await self.dht.provide(model_cid(model)))
        return provided

    async def find_providers(self, model: str, count: int = 20) -> list[str]:
        """Peer ids with a provider record for ``model`` (deduplicated; may include dead nodes)."""
        if self.dht is None:
            raise RuntimeError("runtime not started")
        found = []
        with trio.move_on_after(DHT_TIMEOUT) as scope:
            scope.shield = True  # a DHT query cancelled mid-dial can leak its socket
            found = await self.dht.find_providers(model_cid(model), count)
        return list(dict.fromkeys(str(info.peer_id.to_base58()) for info in found))

    # -- inference --------------------------------------------------------------------------------

    async def request(self, peer_id: str, request: InferRequest) -> AsyncGenerator[ResponseFrame, None]:
        """Send ``request`` to ``peer_id``; yields frames (see :func:`request_frames`)."""
        from libp2p.peer.id import ID

        try:
            peer = ID.from_base58(peer_id)
        except Exception as exc:
            raise BackendUnavailable(f"invalid peer id {peer_id!r}") from exc
        await self._ensure_connected(peer)
        async with aclosing(request_frames(self.host, peer, request, pool=self.streams)) as frames:
            async for frame in frames:
                yield frame
