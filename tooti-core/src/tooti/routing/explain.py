"""Explaining routing decisions: why a node was left out.

Strategies explain the order of the eligible nodes in :attr:`Decision.reasons`; this module gives the
other half, why each excluded node was excluded, using the same rules as
:func:`tooti.routing.eligible` (a test checks that both agree). It is for debugging and for error
messages such as "no node matches the routing preferences", never for every request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.routing.eligibility import total_price

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tooti.routing.protocol import Candidate, Preferences

__all__ = ["exclusion_reason", "explain_exclusions"]


def exclusion_reason(c: Candidate, prefs: Preferences) -> str | None:
    """Return why ``c`` is not eligible for ``prefs`` (the first rule it breaks), or ``None``."""
    if prefs.model not in c.models:
        return f"does not serve {prefs.model!r}"
    if c.reputation <= 0.0:
        return "quarantined (reputation 0)"
    if c.peer_id in prefs.ignore:
        return "in the request's ignore list"
    if prefs.only is not None and c.peer_id not in prefs.only:
        return "not in the request's only list"
    if prefs.max_price is not None and total_price(c) > prefs.max_price:
        return f"price {total_price(c):g}/1K above max_price {prefs.max_price:g}"
    if prefs.region is not None and c.region != prefs.region:
        return f"region {c.region or 'unset'} is not {prefs.region}"
    return None


def explain_exclusions(candidates: Sequence[Candidate], prefs: Preferences) -> tuple[str, ...]:
    """One ``"<peer>: excluded, <why>"`` line per candidate that no strategy may choose."""
    lines = []
    for c in candidates:
        why = exclusion_reason(c, prefs)
        if why is not None:
            lines.append(f"{c.peer_id}: excluded, {why}")
    return tuple(lines)
