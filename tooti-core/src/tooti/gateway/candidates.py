"""Turning the registry snapshot and the gateway's own observations into routing candidates.

Two sources, no I/O: the node's heartbeat (its own load, TTFT and speed, up to one heartbeat old)
and this gateway's passive measurements (live in-flight counts, observed TTFT, failures, cooldown).
The gateway's numbers win where both exist because they are current and measured end to end.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tooti.network import NodeView
from tooti.routing.protocol import Candidate

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tooti.gateway.observations import Observations
    from tooti.network import AdvertisedModel

__all__ = ["ModelMemory", "ServedNames", "build_candidates"]


def _price(node: NodeView, model: str) -> tuple[float | None, float | None]:
    for m in node.models:
        if model == m.name or model in m.aliases:
            return m.price_in_per_1k, m.price_out_per_1k
    return None, None


class ServedNames:
    """Each node's served names (models and aliases), recomputed only when its model list changes.

    The registry hands out the same ``models`` tuple until a node's next heartbeat, so an identity
    check replaces rebuilding a set per node per request (2 ms per decision at 1,000 nodes).
    """

    def __init__(self) -> None:
        self._cache: dict[str, tuple[tuple[AdvertisedModel, ...], frozenset[str]]] = {}

    def __call__(self, node: NodeView) -> frozenset[str]:
        """The names ``node`` answers to (cached while its model list is the same object)."""
        hit = self._cache.get(node.peer_id)
        if hit is not None and hit[0] is node.models:
            return hit[1]
        names = node.serves()
        self._cache[node.peer_id] = (node.models, names)
        return names

    def __len__(self) -> int:
        return len(self._cache)

    def forget_except(self, live: set[str]) -> None:
        """Drop peers that left the registry."""
        for peer in [p for p in self._cache if p not in live]:
            del self._cache[peer]


def build_candidates(
    nodes: Sequence[NodeView],
    model: str,
    obs: Observations,
    *,
    ignore_cooldown: bool = False,
    served_names: Callable[[NodeView], frozenset[str]] = NodeView.serves,
) -> list[Candidate]:
    """Candidates for ``model``: every live node that serves it (name or alias)."""
    out: list[Candidate] = []
    for node in nodes:
        served = served_names(node)
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
        self._last_note = float("-inf")

    def note(
        self, nodes: Sequence[NodeView], served_names: Callable[[NodeView], frozenset[str]] = NodeView.serves
    ) -> None:
        """Remember every model the live nodes serve now."""
        now = self._last_note = self._clock()
        for node in nodes:
            for name in served_names(node):
                self._seen[name] = now

    def due(self, every_s: float = 1.0) -> bool:
        """Whether :meth:`note` has not run for ``every_s`` (it is O(all models), so not per request)."""
        return self._clock() - self._last_note >= every_s

    def known(self, model: str) -> bool:
        """Whether some node served ``model`` within the last ``ttl_s`` seconds."""
        at = self._seen.get(model)
        return at is not None and self._clock() - at <= self.ttl_s
