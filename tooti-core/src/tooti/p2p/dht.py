"""Keys of tooti's provider records in the private Kademlia DHT (``/tooti/kad/1.0.0``).

A node provides one record per served model under CIDv1(raw, sha2-256("tooti/v0.1/model/<name>")),
the same key the Go implementation uses. Liveness never comes from the DHT (records outlive nodes).
"""

from __future__ import annotations

import hashlib

__all__ = ["model_cid", "model_key"]

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
