"""What may never be chosen, whatever the ordering: the one eligibility rule, applied by the gateway.

Strategies do not filter (hook API 3): the gateway applies :func:`eligible` once per decision and
hands the strategy only what passed. Stale nodes never become candidates (the route table stops
selecting them), and nodes in cooldown stay eligible: they are ranked after the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tooti.routing.protocol import Candidate, Preferences

__all__ = ["eligible", "total_price"]


def total_price(candidate: Candidate) -> float:
    """Input plus output price per 1K tokens; a node that sets no price is free."""
    return (candidate.price_in_per_1k or 0.0) + (candidate.price_out_per_1k or 0.0)


def eligible(candidates: Sequence[Candidate], prefs: Preferences) -> list[Candidate]:
    """Return the candidates a strategy may order, keeping their input order.

    A candidate is excluded when it does not serve ``prefs.model``, has a reputation of 0
    (quarantined), costs more than ``prefs.max_price``, is outside ``prefs.only``, inside
    ``prefs.ignore``, or outside ``prefs.region`` (a region preference keeps nodes that state no
    region out).
    """
    model = prefs.model
    if prefs.only is None and not prefs.ignore and prefs.max_price is None and prefs.region is None:
        return [c for c in candidates if c.reputation > 0.0 and model in c.models]  # no preference: one pass
    out: list[Candidate] = []
    for c in candidates:
        if prefs.model not in c.models or c.reputation <= 0.0 or c.peer_id in prefs.ignore:
            continue
        if prefs.only is not None and c.peer_id not in prefs.only:
            continue
        if prefs.max_price is not None and total_price(c) > prefs.max_price:
            continue
        if prefs.region is not None and c.region != prefs.region:
            continue
        out.append(c)
    return out
