"""Building the libp2p host and its pubsub and DHT services, with tooti's workarounds applied.

Transports: TCP + Noise + yamux only (QUIC is unreliable in py-libp2p 0.8.1). Workarounds applied
(see docs/p2p.md): ``max_connections_per_peer=1`` (250 ms per dial otherwise), one attempt per dial
(no swarm retries), no auto-connector, and a raised gossipsub spam limit (heartbeats relayed by few
peers were dropped). :class:`DialTracker` is the transport-level gate every outbound dial passes.
Nothing here runs a loop: :class:`tooti.p2p.runtime.P2PRuntime` owns the lifecycle.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

import trio

from tooti.errors import TootiError

if TYPE_CHECKING:
    from libp2p.abc import IHost
    from libp2p.crypto.keys import KeyPair
    from libp2p.kad_dht.kad_dht import KadDHT
    from libp2p.pubsub.pubsub import Pubsub

    from tooti.p2p.dial_policy import DialScopes

__all__ = [
    "GOSSIP_SPAM_LIMIT",
    "INVALID_DECAY",
    "PUBLISH_THRESHOLD",
    "DialTracker",
    "ListenError",
    "build_host",
    "build_services",
    "score_params",
]

log = logging.getLogger(__name__)

GOSSIP_SPAM_LIMIT = 1000.0
INVALID_DECAY = 0.9
"""Per-second decay of a peer's count of refused heartbeats in its gossipsub score."""
PUBLISH_THRESHOLD = -100.0
"""Gossipsub score below which a peer's messages are dropped unread (about 10 refused a second)."""


class ListenError(TootiError):
    """The host could not listen on the configured address (port in use, no such interface)."""


def build_host(key_pair: KeyPair, mdns: bool) -> IHost:
    """A TCP + Noise + yamux host, one connection per peer, one attempt per dial, no auto-connector."""
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


async def _no_auto_connect() -> None:
    return None


def _disable_auto_connector(host: IHost) -> None:
    """Stop the swarm's auto-connector from dialling every peerstore peer (up to 200 dials).

    It redials peers it heard of (even a node that just left, and during shutdown, which leaked
    sockets in our tests). tooti keeps its connections with its own peer keeper and on-demand dials.
    """
    connector = getattr(host.get_network(), "auto_connector", None)
    if connector is not None:
        connector.maybe_connect = _no_auto_connect


class DialTracker:
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


def score_params() -> Any:
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


def build_services(host: IHost) -> tuple[Pubsub, Any, KadDHT]:
    """Pubsub with strict signing over gossipsub (degree 6, 1 s heartbeat) and a server-mode DHT."""
    from libp2p.custom_types import TProtocol
    from libp2p.kad_dht.kad_dht import DHTMode, KadDHT
    from libp2p.pubsub.gossipsub import PROTOCOL_ID, PROTOCOL_ID_V11, GossipSub
    from libp2p.pubsub.pubsub import Pubsub

    gossipsub = GossipSub(
        score_params=score_params(),
        protocols=[TProtocol(PROTOCOL_ID_V11), TProtocol(PROTOCOL_ID)],
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_interval=1,
        max_messages_per_topic_per_second=GOSSIP_SPAM_LIMIT,
    )
    pubsub = Pubsub(host, gossipsub, strict_signing=True)
    dht = KadDHT(host, DHTMode.SERVER)
    return pubsub, gossipsub, dht
