"""The peers a host knew, kept on disk so a restart does not depend on the bootstrap list.

A small JSON file (``{"v": 1, "peers": [{"id": …, "addrs": […]}]}``), most recently connected
first, capped at :data:`MAX_PEERS` peers and :data:`MAX_ADDRS` addresses each. It is written
atomically (temporary file, then rename). A missing, unreadable or malformed file is an empty list:
the bootstrap peers are the fallback. The addresses came from peers, so they are dialled through
the same dial scopes as any other peer-announced address.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["MAX_ADDRS", "MAX_PEERS", "KnownPeer", "load_known_peers", "save_known_peers"]

log = logging.getLogger(__name__)

MAX_PEERS = 64
MAX_ADDRS = 8
_MAX_FILE_BYTES = 256 * 1024


class KnownPeer(msgspec.Struct, frozen=True):
    """One peer id and the addresses (without ``/p2p/…``) it was reached at or announced."""

    id: str
    addrs: tuple[str, ...] = ()


class _File(msgspec.Struct):
    v: int = 1
    peers: list[KnownPeer] = msgspec.field(default_factory=list)


def load_known_peers(path: Path) -> list[KnownPeer]:
    """The peers saved in ``path``; an empty list when there is no usable file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("known peers file %s unreadable: %s", path, exc.strerror)
        return []
    if len(data) > _MAX_FILE_BYTES:
        log.warning("known peers file %s is too large; ignored", path)
        return []
    try:
        peers = msgspec.json.decode(data, type=_File).peers
    except msgspec.DecodeError:
        log.warning("known peers file %s is malformed; ignored", path)
        return []
    return [KnownPeer(p.id, tuple(a for a in p.addrs[:MAX_ADDRS] if isinstance(a, str))) for p in peers[:MAX_PEERS]]


def save_known_peers(path: Path, peers: list[KnownPeer]) -> None:
    """Write ``peers`` (capped) to ``path`` atomically; failures are logged, never raised."""
    capped = [KnownPeer(p.id, p.addrs[:MAX_ADDRS]) for p in peers[:MAX_PEERS]]
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(msgspec.json.encode(_File(peers=capped)))
        tmp.replace(path)
    except OSError as exc:
        log.warning("cannot save known peers to %s: %s", path, exc.strerror)
