"""What may never be chosen, whatever the ordering: the one eligibility rule, applied by the gateway.

Strategies do not filter (hook API 3): the gateway applies :func:`eligible` once per decision and
hands the strategy only what passed. Stale nodes never become candidates (the route table stops
selecting them), and nodes in cooldown stay eligible: they are ranked after the others.

The rules are written once, in :func:`rule_stages`, as one list pass each: :func:`eligible` keeps
what passes them all, and :func:`first_broken_rule` (behind the "excluded, because ..." lines of
:mod:`tooti.routing.explain`) runs the same passes on one candidate, so the filter and its
explanation cannot disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from tooti.routing.context_fit import holds_context
from tooti.routing.prices import total_price

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from tooti.routing.protocol import Candidate, Preferences

__all__ = ["Rule", "eligible", "first_broken_rule", "rule_stages", "total_price"]

Rule = Literal["model", "quarantined", "ignore", "only", "max_price", "region", "context"]
"""The eligibility rules, in the order they are applied."""


def rule_stages(candidates: Iterable[Candidate], prefs: Preferences) -> Iterator[tuple[Rule, list[Candidate]]]:
    """Apply each rule ``prefs`` calls for in turn; yield it with the candidates that passed it and all before.

    A candidate is excluded when it does not serve ``prefs.model``, has a reputation of 0
    (quarantined), is inside ``prefs.ignore``, outside ``prefs.only``, costs more than
    ``prefs.max_price`` (unpriced nodes are free), is outside ``prefs.region`` (a region
    preference keeps nodes that state no region out), or announces a context smaller than
    ``prefs.context_tokens`` (an unannounced context may hold it). Rules a request does not use cost nothing:
    one C-level list pass per rule that applies, no call per candidate.
    """
    model = prefs.model
    kept = [c for c in candidates if model in c.models]
    yield "model", kept
    kept = [c for c in kept if c.reputation > 0.0]
    yield "quarantined", kept
    if prefs.ignore:
        ignore = prefs.ignore
        kept = [c for c in kept if c.peer_id not in ignore]
        yield "ignore", kept
    if prefs.only is not None:
        only = prefs.only
        kept = [c for c in kept if c.peer_id in only]
        yield "only", kept
    if prefs.max_price is not None:
        ceiling = prefs.max_price
        kept = [c for c in kept if total_price(c) <= ceiling]
        yield "max_price", kept
    if prefs.region is not None:
        region = prefs.region
        kept = [c for c in kept if c.region == region]
        yield "region", kept
    if prefs.context_tokens:
        needed = prefs.context_tokens
        kept = [c for c in kept if holds_context(c, needed)]
        yield "context", kept


def eligible(candidates: Iterable[Candidate], prefs: Preferences) -> list[Candidate]:
    """Return the candidates a strategy may order (every rule of :func:`rule_stages`), in input order."""
    kept: list[Candidate] = []
    for _rule, kept in rule_stages(candidates, prefs):  # the last stage's survivors are the answer
        if not kept:
            break
    return kept


def first_broken_rule(candidate: Candidate, prefs: Preferences) -> Rule | None:
    """The first rule of :func:`rule_stages` that excludes ``candidate``, or ``None`` if it is eligible."""
    for rule, kept in rule_stages((candidate,), prefs):
        if not kept:
            return rule
    return None
