"""The gateway's last word on a strategy's order: nodes in cooldown go after the others.

A node that failed recently is rested, not removed: refusing it outright turns one transient
failure into an outage while it is the only node left, and lets a client steer all traffic by
getting the other nodes cooled with one bad request each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from tooti.routing.protocol import Decision

__all__ = ["cooling_last"]


def cooling_last(decision: Decision) -> Decision:
    """``decision`` with cooling candidates moved after the others, each side in the strategy's order."""
    ordered = decision.ordered
    if not any(c.cooling for c in ordered):
        return decision
    warm = tuple(c for c in ordered if not c.cooling)
    cooling = tuple(c for c in ordered if c.cooling)
    note = f"{len(cooling)} cooling node(s) tried last: {', '.join(c.peer_id for c in cooling[:5])}"
    return msgspec.structs.replace(decision, ordered=warm + cooling, reasons=(*decision.reasons, note))
