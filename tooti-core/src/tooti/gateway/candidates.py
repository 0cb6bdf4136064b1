"""Routing candidates from prepared route entries and the gateway's own observations.

Two sources, no I/O: the node's heartbeat (its own load, TTFT and speed, up to one heartbeat old,
prepared on arrival in a :class:`~tooti.routing.table.RouteEntry`) and this gateway's passive
measurements (live in-flight counts, observed TTFT, failures, cooldown, reputation). The gateway's
numbers win where both exist because they are current and measured end to end.

A candidate is built once and kept on its entry, per model, until it goes out of date: a new
heartbeat makes a new entry, any observation of the node bumps its ``NodeStats.version``, and the
time-driven parts (a cooldown ending, a failure leaving the one-minute window) carry their own
expiry. So a decision touches only the shortlisted nodes, and mostly reuses their candidates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.gateway.observations import FAILURE_WINDOW_S
from tooti.routing.protocol import Candidate

if TYPE_CHECKING:
    from tooti.gateway.observations import NodeStats, Observations
    from tooti.routing.table import RouteEntry

__all__ = ["candidate_for"]

_INF = float("inf")


def _failure_state(stats: NodeStats, now: float, expires: float) -> tuple[int, bool, float]:
    """Recent failures, whether cooling, and until when both stay as they are."""
    horizon = now - FAILURE_WINDOW_S
    recent = [t for t in stats.failures if t >= horizon]
    if recent:
        expires = min(expires, recent[0] + FAILURE_WINDOW_S)
    cooling = stats.cooldown_until > now
    if cooling:
        expires = min(expires, stats.cooldown_until)
    return len(recent), cooling, expires


def candidate_for(entry: RouteEntry, model: str, obs: Observations, now: float) -> Candidate:
    """The routing candidate of ``entry`` for ``model`` at ``now`` (reused while it is up to date).

    ``now`` is on the observations' clock (:meth:`Observations.now`).
    """
    stats = obs.peek(entry.peer_id)
    version = stats.version if stats is not None else -1
    cached = entry.cache.get(model)
    if cached is not None and cached[1] == version and now < cached[2] and cached[3] is obs:
        return cached[0]
    view = entry.view
    owner = entry.by_name.get(model)
    if stats is None:
        failures, cooling, expires = 0, False, _INF
        in_flight, ttft, speed, reputation = view.in_flight, view.ttft_ms, view.tokens_per_s, 1.0
    else:
        failures, cooling, expires = _failure_state(stats, now, _INF)
        in_flight = max(view.in_flight, stats.in_flight)
        ttft = stats.ttft_ms if stats.ttft_ms is not None else view.ttft_ms
        speed = stats.tokens_per_s if stats.tokens_per_s is not None else view.tokens_per_s
        reputation = stats.reputation
    candidate = Candidate(
        peer_id=entry.peer_id,
        models=entry.names,
        in_flight=in_flight,
        queued=view.queued,
        capacity=view.capacity,
        ttft_ms=ttft,
        tokens_per_s=speed,
        price_in_per_1k=owner.price_in_per_1k if owner is not None else None,
        price_out_per_1k=owner.price_out_per_1k if owner is not None else None,
        region=view.region,
        cooling=cooling,
        recent_failures=failures,
        reputation=reputation,
        context_length=owner.context_length if owner is not None else None,
    )
    entry.cache[model] = (candidate, version, expires, obs)  # two gateways on one network never share one
    return candidate
