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


def with_reserve(decision: Decision, reserve: Decision) -> Decision:
    """``decision`` followed by ``reserve``'s candidates: tried only after every other node failed.

    The reserve holds nodes the gateway's trust filter keeps from user traffic for now (on probation
    beyond their share, below the reputation floor): serving a request there beats failing it when
    every preferred node failed, and their share of normal traffic stays as small as before.
    """
    seen = {c.peer_id for c in decision.ordered}
    extra = tuple(c for c in reserve.ordered if c.peer_id not in seen)
    if not extra:
        return decision
    note = f"{len(extra)} held-back node(s) tried only after the others: {', '.join(c.peer_id for c in extra[:5])}"
    return msgspec.structs.replace(decision, ordered=decision.ordered + extra, reasons=(*decision.reasons, note))


def cooling_last(decision: Decision) -> Decision:
    """``decision`` with cooling candidates moved after the others, each side in the strategy's order."""
    ordered = decision.ordered
    if not any(c.cooling for c in ordered):
        return decision
    warm = tuple(c for c in ordered if not c.cooling)
    cooling = tuple(c for c in ordered if c.cooling)
    note = f"{len(cooling)} cooling node(s) tried last: {', '.join(c.peer_id for c in cooling[:5])}"
    return msgspec.structs.replace(decision, ordered=warm + cooling, reasons=(*decision.reasons, note))
