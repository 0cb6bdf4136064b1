"""Routing: the strategy contract, eligibility rules and the built-in default."""

from __future__ import annotations

from tooti.routing.eligibility import eligible, total_price
from tooti.routing.protocol import Candidate, Decision, Preferences, RoutingStrategy

__all__ = ["Candidate", "Decision", "Preferences", "RoutingStrategy", "eligible", "total_price"]
