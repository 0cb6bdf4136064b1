"""tooti's provider records in the private Kademlia DHT (``/tooti/kad/1.0.0``): keys, provide, find.

A node provides one record per served model under CIDv1(raw, sha2-256("tooti/v0.1/model/<name>")),
the same key the Go implementation uses. Liveness never comes from the DHT (records outlive nodes).
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import trio

if TYPE_CHECKING:
    from libp2p.kad_dht.kad_dht import KadDHT

__all__ = ["DHT_TIMEOUT", "find_providers", "model_cid", "model_key", "provide"]

_CID_V1_RAW = b"\x01\x55"
_SHA2_256 = b"\x12\x20"


def model_key(name: str) -> bytes:
    """The DHT key (the multihash) for ``name``."""
    return _SHA2_256 + hashlib.sha256(f"tooti/v0.1/model/{name}".encode()).digest()


def model_cid(name: str) -> str:
    """The CIDv1 string (base32, ``b…``) for ``name``: what ``KadDHT.provide`` accepts."""
    import base64

    raw = _CID_V1_RAW + model_key(name)
    return "b" + base64.b32encode(raw).decode("ascii").lower().rstrip("=")


DHT_TIMEOUT = 5.0


async def provide(dht: KadDHT, model: str) -> bool:
    """Announce in the DHT that this host serves ``model`` (bounded, shielded)."""
    provided = False
    with trio.move_on_after(DHT_TIMEOUT) as scope:
        scope.shield = True  # a DHT query cancelled mid-dial can leak its socket
        provided = bool(await dht.provide(model_cid(model)))
    return provided


async def find_providers(dht: KadDHT, model: str, count: int = 20) -> list[str]:
    """Peer ids with a provider record for ``model`` (deduplicated; may include dead nodes)."""
    found = []
    with trio.move_on_after(DHT_TIMEOUT) as scope:
        scope.shield = True  # a DHT query cancelled mid-dial can leak its socket
        found = await dht.find_providers(model_cid(model), count)
    return list(dict.fromkeys(str(info.peer_id.to_base58()) for info in found))
