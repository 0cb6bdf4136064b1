"""Bootstrap peer addresses: full ``/p2p/<id>`` multiaddrs, and ``/dnsaddr/<host>`` expansion.

``/dnsaddr/<host>`` resolves the TXT records of ``_dnsaddr.<host>``; each ``dnsaddr=<multiaddr>``
record is a candidate (nested ``/dnsaddr`` up to a small depth). Results without ``/p2p/<id>`` are
skipped; ``/dnsaddr/<host>/p2p/<id>`` keeps only records for that peer. The resolver is injectable
(tests never touch real DNS); the default uses dnspython, which libp2p's multiaddr already requires.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

__all__ = ["TxtResolver", "dns_txt_resolver", "expand_bootstrap", "peer_id_of_addr"]

log = logging.getLogger(__name__)

TxtResolver = Callable[[str], Awaitable[list[str]]]
"""Returns the TXT strings of a DNS name (an empty list when there are none)."""

MAX_DEPTH = 4
_PREFIX = "dnsaddr="


async def dns_txt_resolver(name: str) -> list[str]:
    """Resolve TXT records with dnspython (works under trio and asyncio)."""
    import dns.asyncresolver
    import dns.exception

    try:
        answer = await dns.asyncresolver.resolve(name, "TXT", lifetime=5.0)
    except dns.exception.DNSException as exc:
        log.warning("dnsaddr lookup of %s failed: %s", name, type(exc).__name__)
        return []
    return [b"".join(record.strings).decode("utf-8", "replace") for record in answer]


def peer_id_of_addr(addr: str) -> str | None:
    """The ``/p2p/<id>`` component of a multiaddr string, if any."""
    parts = addr.split("/")
    for i, part in enumerate(parts[:-1]):
        if part in ("p2p", "ipfs"):
            return parts[i + 1]
    return None


async def _expand_one(addr: str, resolver: TxtResolver, depth: int) -> list[str]:
    if not addr.startswith("/dnsaddr/"):
        return [addr] if peer_id_of_addr(addr) else []
    if depth >= MAX_DEPTH:
        log.warning("dnsaddr %s nests too deeply; ignored", addr)
        return []
    host = addr.split("/")[2]
    wanted = peer_id_of_addr(addr)
    out: list[str] = []
    for txt in await resolver(f"_dnsaddr.{host}"):
        if not txt.startswith(_PREFIX):
            continue
        for found in await _expand_one(txt[len(_PREFIX) :].strip(), resolver, depth + 1):
            if wanted is None or peer_id_of_addr(found) == wanted:
                out.append(found)
    return out


async def expand_bootstrap(addrs: list[str], resolver: TxtResolver = dns_txt_resolver) -> list[str]:
    """Expand ``addrs`` into dialable multiaddrs ending in ``/p2p/<id>``, deduplicated, in order."""
    out: list[str] = []
    for addr in addrs:
        for found in await _expand_one(addr, resolver, 0):
            if found not in out:
                out.append(found)
    return out
