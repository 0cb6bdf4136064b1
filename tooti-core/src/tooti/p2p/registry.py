"""The gateway's registry of live nodes, fed by heartbeats only.

Liveness is measured on this process's monotonic clock (a sender's timestamp is never trusted), a
node is stale after three missed heartbeat intervals, and each heartbeat replaces the node's model
list. The DHT never refreshes liveness. Each heartbeat is rate-limited, decoded and validated once
(in the gossipsub validator) and turned into routing data on arrival: the registry's
:class:`~tooti.routing.table.RouteTable` is what the gateway routes from. Thread-safe: the trio p2p
thread writes, the asyncio gateway reads.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import msgspec

from tooti.network import NodeView
from tooti.p2p.heartbeat import HeartbeatError, decode_heartbeat
from tooti.p2p.heartbeat_rate import HeartbeatRateLimit
from tooti.routing.table import RouteTable

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable

    from tooti.p2p.heartbeat import Heartbeat

log = logging.getLogger(__name__)

__all__ = ["STALE_INTERVALS", "Registry", "node_view"]

STALE_INTERVALS = 3


def node_view(heartbeat: Heartbeat) -> NodeView:
    """The gateway's view of a node from its heartbeat (``age_s`` is filled in when read)."""
    return NodeView(
        peer_id=heartbeat.node_id,
        name=heartbeat.name,
        models=heartbeat.models,
        in_flight=heartbeat.in_flight,
        queued=heartbeat.queued,
        capacity=heartbeat.capacity,
        ttft_ms=heartbeat.ttft_ms,
        tokens_per_s=heartbeat.tokens_per_s,
        region=heartbeat.region,
        version=heartbeat.version,
        hardware=heartbeat.hardware.summary(),
        addrs=heartbeat.addrs,
        certificate=heartbeat.certificate,
    )


class Registry:
    """Live nodes and the models they serve.

    Args:
        interval_sec: the heartbeat interval; nodes silent for three times that are stale.
        clock: a monotonic clock in seconds (tests inject one).
    """

    def __init__(self, interval_sec: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = STALE_INTERVALS * interval_sec
        self.table = RouteTable(self.stale_after, clock=clock)
        self.rate_limit = HeartbeatRateLimit(interval_sec, clock=clock)
        self.accepted = 0
        self.invalid = 0
        self.rate_limited = 0

    @property
    def dropped(self) -> int:
        """Heartbeats refused for any reason (invalid or over the rate limit)."""
        return self.invalid + self.rate_limited

    def counts(self) -> dict[str, int]:
        """Heartbeats received by result: ``accepted``, ``invalid``, ``rate_limited`` (for metrics)."""
        return {"accepted": self.accepted, "invalid": self.invalid, "rate_limited": self.rate_limited}

    def receive(self, data: bytes, signer: str | Callable[[], str], *, sender: Hashable, own: str = "") -> bool:
        """Rate-limit, decode (once) and record one heartbeat; ``False`` when it was refused.

        Args:
            data: the gossipsub payload.
            signer: base58 peer id of the message's signer, or a function computing it (base58 is
                not free, and a rate-limited message never needs it).
            sender: a cheap key of the signer for the rate limit (the raw peer id bytes).
            own: this process's peer id; its own heartbeats are accepted but not recorded.
        """
        if not self.rate_limit.allow(sender):
            self.rate_limited += 1
            return False
        peer = signer if isinstance(signer, str) else signer()
        try:
            heartbeat = decode_heartbeat(data, peer)
        except HeartbeatError as exc:
            self.invalid += 1
            log.info("dropped heartbeat from %s: %s", peer, exc)
            return False
        if heartbeat.node_id != own:
            self.update(heartbeat)
        return True

    def update(self, heartbeat: Heartbeat) -> None:
        """Record a validated heartbeat; it replaces everything the node announced before."""
        self.table.put(node_view(heartbeat))
        self.accepted += 1

    def remove(self, peer_id: str) -> None:
        """Forget a node now."""
        self.table.remove(peer_id)

    def prune(self) -> list[str]:
        """Drop stale nodes; return their peer ids (O(stale nodes))."""
        return self.table.prune()

    def snapshot(self) -> list[NodeView]:
        """Live nodes (stale ones excluded even before the next prune), sorted by peer id. O(n)."""
        return self.table.views()

    def get(self, peer_id: str) -> NodeView | None:
        """One live node's view, or ``None``. O(1)."""
        entry = self.table.get(peer_id)
        if entry is None:
            return None
        return msgspec.structs.replace(entry.view, age_s=self.table.clock() - entry.seen)

    def models(self) -> dict[str, list[str]]:
        """Model index: every served name and alias → peer ids serving it."""
        index: dict[str, list[str]] = {}
        for view in self.snapshot():
            for name in sorted(view.serves()):
                index.setdefault(name, []).append(view.peer_id)
        return index
