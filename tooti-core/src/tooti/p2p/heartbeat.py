"""The heartbeat a node publishes on gossipsub, and its validation rules.

Topic ``/tooti/heartbeat/1``; payload JSON (msgspec) with a version field ``v``. A heartbeat is only
accepted when its ``node_id`` equals the peer that signed the gossipsub message (libp2p strict
signing checks the signature itself), so nobody can announce, or shadow, another node.

Nothing a peer says is trusted unbounded: every number must be finite and within a sane range
(negative load, absurd prices and 1e308 latencies are refused), counts are capped (models, aliases,
addresses) and every name uses a safe character set, so ``<script>`` never reaches ``/v1/models``
or a dashboard. The bounds are msgspec constraints, checked in C while decoding (a few µs per
heartbeat), and a heartbeat that breaks one is refused whole: a peer sending garbage in one field
is not trusted for the others.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from tooti.network import AdvertisedModel

__all__ = [
    "HEARTBEAT_TOPIC",
    "HEARTBEAT_VERSION",
    "MAX_HEARTBEAT_BYTES",
    "Hardware",
    "Heartbeat",
    "HeartbeatError",
    "check_heartbeat",
    "decode_heartbeat",
    "encode_heartbeat",
]

HEARTBEAT_TOPIC = "/tooti/heartbeat/1"
HEARTBEAT_VERSION = 1
MAX_HEARTBEAT_BYTES = 64 * 1024
MAX_MODELS = 64
"""Models one node may announce (a real node serves a handful; 256 made-up ones was an attack)."""
MAX_SERVED_NAMES = 256
"""Names and aliases one node may announce in total."""
MAX_ADDRS = 16
"""Listen addresses one heartbeat may list."""
MAX_COUNT = 1_000_000
"""Ceiling of in-flight, queued and capacity counts."""

_PeerId = Annotated[str, msgspec.Meta(pattern=r"\A[1-9A-HJ-NP-Za-km-z]{1,128}\Z")]
_NodeName = Annotated[str, msgspec.Meta(pattern=r"\A([A-Za-z0-9][A-Za-z0-9 ._-]{0,63})?\Z")]
_Label = Annotated[str, msgspec.Meta(pattern=r"\A([A-Za-z0-9][A-Za-z0-9._+-]{0,63})?\Z")]
_Region = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")]
_Addr = Annotated[str, msgspec.Meta(pattern=r"\A/[A-Za-z0-9/._:-]{1,255}\Z")]
_Certificate = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9._-]{1,4096}\Z")]
_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_COUNT)]
_Millis = Annotated[float, msgspec.Meta(ge=0.0, le=3_600_000.0)]
_Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1_000_000.0)]


class Hardware(msgspec.Struct, kw_only=True, frozen=True):
    """A cheap summary of the node's machine."""

    cpus: Annotated[int, msgspec.Meta(ge=0, le=1 << 20)] = 0
    mem_mb: Annotated[int, msgspec.Meta(ge=0, le=1 << 40)] | None = None
    arch: _Label = ""
    os: _Label = ""

    def summary(self) -> str:
        """One line for tables and ``NodeView.hardware``."""
        mem = f", {self.mem_mb / 1024:.1f} GiB" if self.mem_mb else ""
        return f"{self.os}/{self.arch}, {self.cpus} cpu{mem}"


class Heartbeat(msgspec.Struct, kw_only=True, frozen=True):
    """One node's announcement. ``timestamp_ms`` is informational: liveness uses the receiver's clock."""

    v: int = HEARTBEAT_VERSION
    node_id: _PeerId
    name: _NodeName = ""
    models: Annotated[tuple[AdvertisedModel, ...], msgspec.Meta(max_length=MAX_MODELS)] = ()
    in_flight: _Count = 0
    queued: _Count = 0
    capacity: _Count | None = None
    ttft_ms: _Millis | None = None
    tokens_per_s: _Rate | None = None
    region: _Region | None = None
    hardware: Hardware = Hardware()
    version: _Label = ""
    timestamp_ms: Annotated[int, msgspec.Meta(ge=0, le=1 << 53)] = 0
    uptime_s: Annotated[float, msgspec.Meta(ge=0.0, le=1e10)] = 0.0
    addrs: Annotated[tuple[_Addr, ...], msgspec.Meta(max_length=MAX_ADDRS)] = ()
    certificate: _Certificate | None = None
    """The node's membership certificate (docs/security.md); checked by gateways in ``membership`` mode."""


class HeartbeatError(ValueError):
    """A heartbeat was rejected; the message says why (never its content)."""


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Heartbeat)


def encode_heartbeat(heartbeat: Heartbeat) -> bytes:
    """Serialize a heartbeat (JSON), checked with the receivers' rules first.

    A node whose own announcement breaks a bound (a model name with a space, a price above the
    ceiling) learns it here, with the field named, instead of being silently ignored by gateways.
    """
    data = _encoder.encode(heartbeat)
    if len(data) > MAX_HEARTBEAT_BYTES:
        raise HeartbeatError(f"heartbeat of {len(data)} bytes exceeds {MAX_HEARTBEAT_BYTES}")
    check_heartbeat(_decode(data))
    return data


def _decode(data: bytes) -> Heartbeat:
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise HeartbeatError(f"heartbeat field out of bounds: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HeartbeatError(f"malformed heartbeat: {exc}") from None


def check_heartbeat(heartbeat: Heartbeat) -> None:
    """The rules a field-by-field schema cannot say: version and the total count of served names."""
    if heartbeat.v != HEARTBEAT_VERSION:
        raise HeartbeatError(f"unsupported heartbeat version {heartbeat.v}")
    if sum(1 + len(m.aliases) for m in heartbeat.models) > MAX_SERVED_NAMES:
        raise HeartbeatError(f"more than {MAX_SERVED_NAMES} model names and aliases")


def decode_heartbeat(data: bytes, signer: str) -> Heartbeat:
    """Decode and validate a heartbeat signed by ``signer`` (base58 peer id).

    Raises:
        HeartbeatError: too large, malformed, a field out of its bounds (see the module doc), an
            unknown version, too many names, or ``node_id`` differs from the signer.
    """
    if len(data) > MAX_HEARTBEAT_BYTES:
        raise HeartbeatError("heartbeat too large")
    heartbeat = _decode(data)
    if heartbeat.node_id != signer:
        raise HeartbeatError("heartbeat node_id does not match its signer")
    check_heartbeat(heartbeat)
    return heartbeat
