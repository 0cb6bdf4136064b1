"""Which addresses a peer may make this host dial, and how often.

Addresses in heartbeats, identify and DHT answers come from peers, and peers lie: a rogue heartbeat
listing ``/ip4/10.0.0.5/tcp/22`` made a gateway open TCP connections into its own private network.
:class:`DialScopes` limits dials to address *scopes* — ``public``, ``private`` (RFC 1918, CGNAT
100.64/10, IPv6 ULA), ``loopback``, ``link-local`` — or explicit CIDR ranges. The default is
``public`` plus the scopes of the host's own listen addresses: a loopback test network and a LAN work
with no setting, and a gateway listening on a public address never dials private or loopback ones.
Addresses the operator wrote (bootstrap peers, gateways) are trusted and bypass the scopes.
Peer-announced DNS addresses are never dialled (the name could resolve anywhere).

:class:`DialBackoff` spaces dial attempts to one peer: at least :data:`MIN_GAP_SEC` apart, doubling
after each failure up to :data:`MAX_BACKOFF_SEC`, reset by a success.

:class:`PeerDialer` is the interface between whoever decides *whom* to dial (the peer keeper) and
what dials (:class:`tooti.p2p.dialer.Dialer`): the keeper sees scopes, backoff and connected peers,
never the libp2p host.
"""

from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from tooti.config.dial_scopes import SCOPE_NAMES, IPNetwork, parse_scope

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

__all__ = [
    "MAX_BACKOFF_SEC",
    "MIN_GAP_SEC",
    "SCOPE_NAMES",
    "DialBackoff",
    "DialScopes",
    "PeerDialer",
    "address_ip",
    "default_scopes",
    "ip_scope",
]

MIN_GAP_SEC = 1.0
MAX_BACKOFF_SEC = 60.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_PRIVATE = tuple(
    ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)


def ip_scope(ip: IPAddress) -> str:
    """The scope name of one IP address (unspecified and multicast count as ``loopback``: never public)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip_scope(ip.ipv4_mapped)
    if ip.is_loopback or ip.is_unspecified or ip.is_multicast:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if any(ip in net for net in _PRIVATE):
        return "private"
    return "public"


def address_ip(addr: str) -> IPAddress | None:
    """The IP of an ``/ip4/…`` or ``/ip6/…`` multiaddr string; ``None`` for DNS or malformed ones."""
    parts = addr.split("/")
    if len(parts) < 3 or parts[1] not in ("ip4", "ip6"):
        return None
    try:
        return ipaddress.ip_address(parts[2])
    except ValueError:
        return None


def default_scopes(listen_host: str, interface_ips: Iterable[str]) -> list[str]:
    """``public`` plus the scopes of the host's own listen addresses.

    Listening on every interface (``0.0.0.0`` / ``::``) counts the scopes of the non-loopback
    interfaces only, so a public gateway bound to all interfaces still never dials loopback.
    """
    scopes = ["public"]
    if listen_host in ("0.0.0.0", "::", ""):  # noqa: S104 - classifying, not binding
        ips = [ipaddress.ip_address(i) for i in interface_ips]
        found = [ip_scope(ip) for ip in ips if not ip.is_loopback]
    else:
        found = [ip_scope(ipaddress.ip_address(listen_host))]
    scopes.extend(s for s in found if s not in scopes)
    return scopes


@dataclass
class DialScopes:
    """The address scopes this host dials, plus operator-written addresses it always may dial."""

    scopes: list[str | IPNetwork]
    trusted: set[str] = field(default_factory=set)

    @classmethod
    def parse(cls, values: Iterable[str]) -> DialScopes:
        """From ``network.dial_scopes`` strings (names or CIDRs)."""
        return cls([parse_scope(v) for v in values])

    def trust(self, addrs: Iterable[str]) -> None:
        """Always allow these addresses (bootstrap peers, configured gateways), ``/p2p/…`` ignored."""
        self.trusted.update(_transport_part(a) for a in addrs)

    def allows(self, addr: str) -> bool:
        """Whether ``addr`` (a multiaddr string) may be dialled."""
        if _transport_part(addr) in self.trusted:
            return True
        ip = address_ip(addr)
        if ip is None:
            return False
        scope = ip_scope(ip)
        for allowed in self.scopes:
            if isinstance(allowed, str):
                if allowed == scope:
                    return True
            elif ip.version == allowed.version and ip in allowed:
                return True
        return False

    def filter(self, addrs: Iterable[str]) -> list[str]:
        """The addresses of ``addrs`` that may be dialled, in order."""
        return [a for a in addrs if self.allows(a)]

    def describe(self) -> str:
        """For logs: ``public, loopback``."""
        return ", ".join(str(s) for s in self.scopes)


def _transport_part(addr: str) -> str:
    """``/ip4/1.2.3.4/tcp/1`` of ``/ip4/1.2.3.4/tcp/1/p2p/<id>``."""
    for marker in ("/p2p/", "/ipfs/"):
        if marker in addr:
            return addr.split(marker, 1)[0]
    return addr


class DialBackoff:
    """Per-peer spacing of dial attempts (a peer cannot make this host dial in a loop)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._next: dict[str, float] = {}
        self._delay: dict[str, float] = {}
        self.refused = 0

    def allow(self, peer: str) -> bool:
        """Whether a dial to ``peer`` may start now; if so, the next one waits at least the gap."""
        now = self._clock()
        if now < self._next.get(peer, 0.0):
            self.refused += 1
            return False
        self._next[peer] = now + MIN_GAP_SEC
        if len(self._next) > 4096:  # bounded memory: forget peers whose wait is over
            self._forget(now)
        return True

    def wait_left(self, peer: str) -> float:
        """Seconds until a dial to ``peer`` is allowed again."""
        return max(0.0, self._next.get(peer, 0.0) - self._clock())

    def failed(self, peer: str) -> None:
        """The dial failed: the next attempt waits twice as long as this one did."""
        delay = min(MAX_BACKOFF_SEC, 2 * self._delay.get(peer, MIN_GAP_SEC))
        self._delay[peer] = delay
        self._next[peer] = self._clock() + delay

    def succeeded(self, peer: str) -> None:
        """The dial worked: back to the minimum gap."""
        self._delay.pop(peer, None)

    def _forget(self, now: float) -> None:
        for peer in [p for p, t in self._next.items() if t <= now]:
            self._next.pop(peer, None)
            self._delay.pop(peer, None)


class PeerDialer(Protocol):
    """What the peer keeper needs from the dialer (implemented by :class:`tooti.p2p.dialer.Dialer`)."""

    backoff: DialBackoff
    scopes: DialScopes | None
    """``None`` until the host listens (the default scopes depend on the listen address)."""

    def connected_peers(self) -> list[str]:
        """Peer ids with an open connection."""
        ...

    def peerstore_addrs(self) -> dict[str, tuple[str, ...]]:
        """Addresses libp2p learned per peer (identify, DHT, mDNS): candidates, not trusted."""
        ...

    async def dial(self, peer: str, addrs: Iterable[str]) -> None:
        """One dial through the scopes and the backoff; raises ``BackendUnavailable`` when it fails."""
        ...

    async def connect(self, addr: str) -> str:
        """Dial an operator-written ``…/p2p/<id>`` address (no backoff); returns the peer id."""
        ...
