"""Signed gateway presence records: how nodes learn which gateways to keep a connection to.

A node behind NAT cannot be dialled; it is served over connections it opens itself. Gateways
publish a small record on the gossipsub topic ``/tooti/gateway/1`` every heartbeat interval: their
peer id and dialable addresses. gossipsub signs every message (strict signing) and a record is
accepted only when its ``peer_id`` is the signer, so nobody can announce another peer as a gateway
or redirect nodes to a third party's address under a gateway's name. Nodes keep the freshest
:data:`MAX_GATEWAYS` records (:class:`GatewayBook`) and their peer keeper holds a connection to
each, through the node's dial scopes.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = [
    "MAX_GATEWAYS",
    "PRESENCE_TOPIC",
    "GatewayBook",
    "GatewayPresence",
    "PresenceError",
    "decode_presence",
    "encode_presence",
]

PRESENCE_TOPIC = "/tooti/gateway/1"
MAX_GATEWAYS = 8
"""Learned gateways a node keeps connections to (configured ones come on top)."""
MAX_ADDRS = 8
MAX_ADDR_CHARS = 256
MAX_RECORD_BYTES = 4096
FORGET_AFTER_INTERVALS = 6


class GatewayPresence(msgspec.Struct, kw_only=True, frozen=True):
    """A gateway saying it exists and where it can be dialled."""

    v: int = 1
    peer_id: str
    addrs: tuple[str, ...] = ()
    timestamp_ms: int = 0


class PresenceError(ValueError):
    """A presence record was refused; the message says why."""


_decoder = msgspec.json.Decoder(GatewayPresence)


def encode_presence(record: GatewayPresence) -> bytes:
    """Serialize a record (JSON), keeping only the first addresses that fit the limits."""
    addrs = tuple(a for a in record.addrs if len(a) <= MAX_ADDR_CHARS)[:MAX_ADDRS]
    return msgspec.json.encode(msgspec.structs.replace(record, addrs=addrs))


def decode_presence(data: bytes, signer: str) -> GatewayPresence:
    """Decode and check a record signed by ``signer``.

    Raises:
        PresenceError: too large, malformed, another version, too many or too long addresses, or a
            ``peer_id`` that is not the signer.
    """
    if len(data) > MAX_RECORD_BYTES:
        raise PresenceError("presence record too large")
    try:
        record = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise PresenceError(f"malformed presence record: {exc}") from None
    if record.v != 1:
        raise PresenceError(f"unsupported presence version {record.v}")
    if record.peer_id != signer:
        raise PresenceError("presence peer_id does not match its signer")
    if len(record.addrs) > MAX_ADDRS or any(len(a) > MAX_ADDR_CHARS or not a.startswith("/") for a in record.addrs):
        raise PresenceError("presence addresses out of bounds")
    return record


class GatewayBook:
    """The gateways heard recently, newest first; bounded, thread-safe, on the receiver's clock.

    Args:
        interval_sec: the presence interval; a gateway silent for six of them is forgotten.
        clock: monotonic seconds (tests inject one).
    """

    def __init__(self, interval_sec: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.forget_after = FORGET_AFTER_INTERVALS * interval_sec
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[float, tuple[str, ...]]] = {}
        self.accepted = 0
        self.refused = 0

    def record(self, presence: GatewayPresence) -> None:
        """Remember a validated record; beyond the cap the stalest gateway is dropped."""
        with self._lock:
            self.accepted += 1
            self._seen[presence.peer_id] = (self._clock(), presence.addrs)
            if len(self._seen) > MAX_GATEWAYS:
                oldest = min(self._seen, key=lambda p: self._seen[p][0])
                del self._seen[oldest]

    def gateways(self) -> dict[str, tuple[str, ...]]:
        """Peer id → announced addresses of the gateways heard within the window, newest first."""
        now = self._clock()
        with self._lock:
            live = [(t, peer, addrs) for peer, (t, addrs) in self._seen.items() if now - t <= self.forget_after]
        return {peer: addrs for _, peer, addrs in sorted(live, reverse=True)}
