"""Turning the registry snapshot and the gateway's own observations into routing candidates.

Two sources, no I/O: the node's heartbeat (its own load, TTFT and speed, up to one heartbeat old)
and this gateway's passive measurements (live in-flight counts, observed TTFT, failures, cooldown).
The gateway's numbers win where both exist because they are current and measured end to end.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tooti.routing.protocol import Candidate

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tooti.gateway.observations import Observations
    from tooti.network import NodeView

__all__ = ["ModelMemory", "build_candidates"]


def _price(node: NodeView, model: str) -> tuple[float | None, float | None]:
    for m in node.models:
        if model == m.name or model in m.aliases:
            return m.price_in_per_1k, m.price_out_per_1k
    return None, None


def build_candidates(
    nodes: Sequence[NodeView], model: str, obs: Observations, *, ignore_cooldown: bool = False
) -> list[Candidate]:
    """Candidates for ``model``: every live node that serves it (name or alias)."""
    out: list[Candidate] = []
    for node in nodes:
        served = node.serves()
        if model not in served:
            continue
        seen = obs.peek(node.peer_id)
        price_in, price_out = _price(node, model)
        out.append(
            Candidate(
                peer_id=node.peer_id,
                models=served,
                in_flight=max(node.in_flight, seen.in_flight if seen else 0),
                queued=node.queued,
                capacity=node.capacity,
                ttft_ms=seen.ttft_ms if seen and seen.ttft_ms is not None else node.ttft_ms,
                tokens_per_s=seen.tokens_per_s if seen and seen.tokens_per_s is not None else node.tokens_per_s,
                price_in_per_1k=price_in,
                price_out_per_1k=price_out,
                region=node.region,
                age_s=node.age_s,
                in_cooldown=False if ignore_cooldown else obs.in_cooldown(node.peer_id),
                recent_failures=obs.recent_failures(node.peer_id),
            )
        )
    return out


class ModelMemory:
    """Models seen in the registry recently, to tell "unknown model" (404) from "no live node" (503).

    Args:
        ttl_s: how long a model is remembered after its last node disappeared.
        clock: monotonic clock, injectable for tests.
    """

    def __init__(self, ttl_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self._seen: dict[str, float] = {}

    def note(self, nodes: Sequence[NodeView]) -> None:
        """Remember every model the live nodes serve now."""
        now = self._clock()
        for node in nodes:
            for name in node.serves():
                self._seen[name] = now

    def known(self, model: str) -> bool:
        """Whether some node served ``model`` within the last ``ttl_s`` seconds."""
        at = self._seen.get(model)
        return at is not None and self._clock() - at <= self.ttl_s
