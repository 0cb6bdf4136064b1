"""The one price lookup: what a node charges for a model name, as routing and metering both read it.

A node announces each model with its aliases and an optional price. Routing (the route table, hence
``max_price`` eligibility and the ``cost`` strategy) and accounting (the reservation before routing,
the charge after) must read the same price for the same (node, name), or a request routed under a
price ceiling could be charged another price. A node may announce one name twice (as two models'
alias, say) with different prices; :func:`models_by_name` settles that once for everyone: the first
model announcing a name owns it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tooti.network import AdvertisedModel, NodeView

__all__ = ["Priced", "models_by_name", "total_price"]


class Priced(Protocol):
    """Anything with a price per 1K tokens: an announced model, a routing candidate."""

    @property
    def price_in_per_1k(self) -> float | None:
        """Price per 1K input (prompt) tokens; ``None``: the node set none."""
        ...

    @property
    def price_out_per_1k(self) -> float | None:
        """Price per 1K output (completion) tokens; ``None``: the node set none."""
        ...


def total_price(priced: Priced) -> float:
    """Input plus output price per 1K tokens; a node that sets no price is free."""
    return (priced.price_in_per_1k or 0.0) + (priced.price_out_per_1k or 0.0)


def models_by_name(view: NodeView) -> dict[str, AdvertisedModel]:
    """Every name and alias ``view`` answers to, mapped to the announced model that owns it.

    The first model (in announcement order) to name a name owns it, whether as its name or an alias.
    """
    owners: dict[str, AdvertisedModel] = {}
    for m in view.models:
        owners.setdefault(m.name, m)
        for alias in m.aliases:
            owners.setdefault(alias, m)
    return owners
