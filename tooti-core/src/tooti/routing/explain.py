"""Explaining routing decisions: why a node was left out.

Strategies explain the order of the eligible nodes in :attr:`Decision.reasons`; this module gives the
other half, why each excluded node was excluded: it runs the very rules of
:func:`tooti.routing.eligible` (:func:`tooti.routing.eligibility.first_broken_rule`) and only words
the answer. It is for debugging and for error
messages such as "no node matches the routing preferences", never for every request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.routing.eligibility import first_broken_rule
from tooti.routing.prices import total_price

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tooti.routing.protocol import Candidate, Preferences

__all__ = ["exclusion_reason", "explain_exclusions"]


def exclusion_reason(c: Candidate, prefs: Preferences) -> str | None:
    """Return why ``c`` is not eligible for ``prefs`` (the first rule it breaks), or ``None``."""
    rule = first_broken_rule(c, prefs)
    if rule is None:
        return None
    if rule == "model":
        return f"does not serve {prefs.model!r}"
    if rule == "quarantined":
        return "quarantined (reputation 0)"
    if rule == "ignore":
        return "in the request's ignore list"
    if rule == "only":
        return "not in the request's only list"
    if rule == "max_price":
        return f"price {total_price(c):g}/1K above max_price {prefs.max_price:g}"
    if rule == "region":
        return f"region {c.region or 'unset'} is not {prefs.region}"
    return f"context {c.context_length} tokens is less than the ~{prefs.context_tokens} the request needs"


def explain_exclusions(candidates: Sequence[Candidate], prefs: Preferences) -> tuple[str, ...]:
    """One ``"<peer>: excluded, <why>"`` line per candidate that no strategy may choose."""
    lines = []
    for c in candidates:
        why = exclusion_reason(c, prefs)
        if why is not None:
            lines.append(f"{c.peer_id}: excluded, {why}")
    return tuple(lines)
