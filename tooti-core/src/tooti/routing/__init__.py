"""Routing: the strategy contract, eligibility rules, the cooling order, route tables and the built-in default."""

from __future__ import annotations

from tooti.routing.eligibility import eligible
from tooti.routing.ordering import cooling_last
from tooti.routing.prices import total_price
from tooti.routing.protocol import Candidate, Decision, Preferences, RoutingStrategy

__all__ = ["Candidate", "Decision", "Preferences", "RoutingStrategy", "cooling_last", "eligible", "total_price"]
