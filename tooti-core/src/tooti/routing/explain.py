"""Explaining routing decisions: why a node was left out, and a compact debug header.

Strategies explain the order of the eligible nodes in :attr:`Decision.reasons`; this module adds the
other half (why each excluded node was excluded, using the same rules as
:func:`tooti.routing.eligible`) and renders both into one header value. It is only for debugging:
the gateway calls it when a client asks for it, never on every request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.routing.eligibility import total_price

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tooti.routing.protocol import Candidate, Decision, Preferences

__all__ = ["DEBUG_HEADER", "debug_header_value", "exclusion_reason", "explain_exclusions"]

DEBUG_HEADER = "x-tooti-route-debug"
_MAX_HEADER_CHARS = 4096


def exclusion_reason(c: Candidate, prefs: Preferences) -> str | None:
    """Return why ``c`` is not eligible for ``prefs`` (the first rule it breaks), or ``None``."""
    if prefs.model not in c.models:
        return f"does not serve {prefs.model!r}"
    if c.stale:
        return f"stale (last heartbeat {c.age_s:.0f} s ago)"
    if c.in_cooldown:
        return f"in cooldown after {c.recent_failures} recent failures"
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


def debug_header_value(decision: Decision, exclusions: Sequence[str] = (), *, limit: int = _MAX_HEADER_CHARS) -> str:
    """Join reasons and exclusions with ``" | "`` into one ASCII header value of at most ``limit`` chars.

    Non-ASCII and control characters are replaced so the value is always a legal header.
    """
    text = " | ".join((*decision.reasons, *exclusions))
    text = "".join(ch if " " <= ch <= "~" else "?" for ch in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
