"""The one load formula: how busy a node is, in requests and relative to its size.

Routing reads load in places that must agree: the route table's shortlist head (from the
heartbeat), the gateway's bounding of a large eligible set (from candidates), and the strategies
that rank by it (``least-loaded``, ``balanced``, ``cost``'s free-slot test) call
:func:`load_ratio`; ``simple`` and the prefix-affinity bound, which count requests, call
:func:`outstanding`, the numerator of the same ratio. A change of formula changes them all at once.
"""

from __future__ import annotations

from typing import Protocol

__all__ = ["LoadFigures", "load_ratio", "outstanding"]


class LoadFigures(Protocol):
    """The figures a load is made of.

    A heartbeat's :class:`~tooti.network.NodeView` and a :class:`~tooti.routing.protocol.Candidate`
    both have them.
    """

    @property
    def in_flight(self) -> int:
        """Requests the node is serving now."""
        ...

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        ...

    @property
    def capacity(self) -> int | None:
        """Requests it serves at once; ``None`` when it did not say."""
        ...


def outstanding(node: LoadFigures) -> int:
    """Requests the node has taken and not finished: serving plus waiting for a slot."""
    return node.in_flight + node.queued


def load_ratio(node: LoadFigures) -> float:
    """``(in_flight + queued) / capacity``; an unknown or zero capacity counts as one slot.

    So a 16-slot node running 4 requests (0.25) is less loaded than a 1-slot node running 1 (1.0),
    and a ratio of 1 or more means no slot is free.
    """
    return outstanding(node) / (node.capacity or 1)
