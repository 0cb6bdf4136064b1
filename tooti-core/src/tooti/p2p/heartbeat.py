"""The heartbeat a node publishes on gossipsub, and its validation rules.

Topic ``/tooti/heartbeat/1``; payload JSON (msgspec) with a version field ``v``. A heartbeat is only
accepted when its ``node_id`` equals the peer that signed the gossipsub message (libp2p strict
signing checks the signature itself), so nobody can announce, or shadow, another node.
"""

from __future__ import annotations

import msgspec

from tooti.network import AdvertisedModel

__all__ = [
    "HEARTBEAT_TOPIC",
    "HEARTBEAT_VERSION",
    "MAX_HEARTBEAT_BYTES",
    "Hardware",
    "Heartbeat",
    "HeartbeatError",
    "decode_heartbeat",
    "encode_heartbeat",
]

HEARTBEAT_TOPIC = "/tooti/heartbeat/1"
HEARTBEAT_VERSION = 1
MAX_HEARTBEAT_BYTES = 64 * 1024
MAX_MODELS = 256


class Hardware(msgspec.Struct, kw_only=True, frozen=True):
    """A cheap summary of the node's machine."""

    cpus: int = 0
    mem_mb: int | None = None
    arch: str = ""
    os: str = ""

    def summary(self) -> str:
        """One line for tables and ``NodeView.hardware``."""
        mem = f", {self.mem_mb / 1024:.1f} GiB" if self.mem_mb else ""
        return f"{self.os}/{self.arch}, {self.cpus} cpu{mem}"


class Heartbeat(msgspec.Struct, kw_only=True, frozen=True):
    """One node's announcement. ``timestamp_ms`` is informational: liveness uses the receiver's clock."""

    v: int = HEARTBEAT_VERSION
    node_id: str
    name: str = ""
    models: tuple[AdvertisedModel, ...] = ()
    in_flight: int = 0
    queued: int = 0
    capacity: int | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    region: str | None = None
    hardware: Hardware = Hardware()
    version: str = ""
    timestamp_ms: int = 0
    uptime_s: float = 0.0
    addrs: tuple[str, ...] = ()


class HeartbeatError(ValueError):
    """A heartbeat was rejected; the message says why (never its content)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Heartbeat)


def encode_heartbeat(heartbeat: Heartbeat) -> bytes:
    """Serialize a heartbeat (JSON)."""
    data = _encoder.encode(heartbeat)
    if len(data) > MAX_HEARTBEAT_BYTES:
        raise HeartbeatError(f"heartbeat of {len(data)} bytes exceeds {MAX_HEARTBEAT_BYTES}")
    return data


def decode_heartbeat(data: bytes, signer: str) -> Heartbeat:
    """Decode and validate a heartbeat signed by ``signer`` (base58 peer id).

    Raises:
        HeartbeatError: too large, malformed, an unknown version, too many models, or ``node_id``
            differs from the signer.
    """
    if len(data) > MAX_HEARTBEAT_BYTES:
        raise HeartbeatError("heartbeat too large")
    try:
        heartbeat = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise HeartbeatError(f"malformed heartbeat: {exc}") from None
    if heartbeat.v != HEARTBEAT_VERSION:
        raise HeartbeatError(f"unsupported heartbeat version {heartbeat.v}")
    if heartbeat.node_id != signer:
        raise HeartbeatError("heartbeat node_id does not match its signer")
    if len(heartbeat.models) > MAX_MODELS:
        raise HeartbeatError("too many models")
    return heartbeat
