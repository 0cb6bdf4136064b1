"""Helpers shared by the strategies, written for speed: one pass per quantity, C-level sorting.

Strategies only rank (hook API 3): the gateway filters eligibility and bounds the snapshot first.

A rank over *n* candidates is O(n) passes plus one ordering step. Per-candidate work is kept to list
comprehensions over msgspec attribute reads; ordering sorts indices by a precomputed key list
(``keys.__getitem__`` is a C call), and for large snapshots only the head that the gateway can
actually try is sorted (see :func:`order_indices`).
"""

from __future__ import annotations

import heapq
import random
import statistics
from collections.abc import Callable, Sequence
from itertools import compress
from operator import itemgetter
from typing import TYPE_CHECKING, Literal

from tooti.routing.load import load_ratio
from tooti.routing.prices import total_price
from tooti.routing.protocol import Candidate, Decision
from tooti_router_strategies._params import Param

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "COMMON_PARAMS",
    "FULL_SORT_MAX",
    "SORTED_HEAD",
    "SPREAD",
    "KeysAt",
    "UnknownTtft",
    "build_decision",
    "expected_ttfts",
    "load_ratios",
    "make_rng",
    "order_indices",
    "prices",
    "split_sample",
    "spread_band",
    "ttft_lookup",
]

UnknownTtft = Literal["median", "optimistic"]
KeysAt = Callable[[Sequence[int]], list[float]]
"""A lazily computed key: returns the keys of the given indices, in order."""

FULL_SORT_MAX = 256
"""Up to this many candidates the whole order is sorted."""
SORTED_HEAD = 64
"""Above :data:`FULL_SORT_MAX`, only the best this many (plus ties at the cut) are sorted.

The rest keep snapshot order. The gateway tries at most ``routing.max_attempts`` (<= 10) nodes, so
a sorted head of 64 is never exhausted, and skipping the full sort roughly halves the ordering
time at 10,000 candidates.
"""
SPREAD = 16
"""At most this many near-best candidates are put in random order at the front (load spreading)."""
MEDIAN_SAMPLE = 255
"""Largest sample the unknown-TTFT median is taken from."""

COMMON_PARAMS: dict[str, Param] = {
    "explain": Param(kind=int, ge=0, le=1000, doc="how many ranked nodes get a reason line"),
    "sample": Param(
        kind=int, ge=0, le=1_000_000, doc="score only a random sample of this many eligible nodes (0 = all)"
    ),
    "seed": Param(kind=int, nullable=True, doc="seed for the random choices (tests, replays)"),
}
TTFT_PARAMS: dict[str, Param] = {
    "unknown_ttft": Param(kind=str, choices=("median", "optimistic"), doc="TTFT assumed for nodes never measured"),
    "queue_penalty": Param(kind=float, ge=0.0, le=100.0, doc="TTFT grows by this factor x queued/capacity"),
}


def make_rng(seed: int | None, rng: random.Random | None) -> random.Random:
    """Return ``rng`` if given, else a generator seeded with ``seed`` (``None``: from the OS)."""
    return rng if rng is not None else random.Random(seed)


def split_sample(el: list[Candidate], sample: int, rng: random.Random) -> tuple[list[Candidate], list[Candidate]]:
    """Split ``el`` into a uniformly random sample of ``sample`` nodes to score and the rest.

    With ``sample == 0`` or a snapshot no larger, everything is scored. Otherwise only the sample is
    ranked (best of *d* random choices, which keeps load spreading close to a full ranking at a
    fraction of the cost) and the rest follow, unscored, in snapshot order.
    """
    n = len(el)
    if not sample or n <= sample:
        return el, []
    picked = rng.sample(range(n), sample)
    mask = bytearray(b"\x01") * n
    for i in picked:
        mask[i] = 0
    return [el[i] for i in picked], list(compress(el, mask))


def load_ratios(el: Sequence[Candidate]) -> list[float]:
    """:func:`tooti.routing.load.load_ratio` per candidate: the gateway's and the route table's load."""
    return list(map(load_ratio, el))


def prices(el: Sequence[Candidate]) -> list[float]:
    """:func:`tooti.routing.prices.total_price` per candidate (unpriced nodes are free), as max_price checks it."""
    return list(map(total_price, el))


def expected_ttfts(el: Sequence[Candidate], unknown: UnknownTtft, queue_penalty: float) -> tuple[list[float], float]:
    """Expected TTFT per candidate and the value assumed for unmeasured ones.

    ``expected = ttft_ms x (1 + queue_penalty x queued / capacity)``: the moving average was measured
    at the node's usual load, and every request already waiting adds roughly one more slot's worth
    of delay. A node with no TTFT yet gets the median of the measured ones (``median``: neither
    favoured nor starved) or the best one (``optimistic``: it joins the near-best band and is
    explored); with no measurement at all every node gets 0 and the choice is random.
    """
    raw = [c.ttft_ms for c in el]
    fill = 0.0
    out: list[float]
    if None in raw:  # a C-level scan; the fill pass runs only when some node is unmeasured
        fill = _fill_value(el, unknown)
        out = [fill if t is None else t for t in raw]
    else:
        out = raw  # type: ignore[assignment]  # no None left, checked just above
    if queue_penalty:
        queued = [c.queued for c in el]
        if any(queued):  # idle networks skip the Python-level loop entirely
            for i in compress(range(len(el)), queued):
                out[i] *= 1.0 + queue_penalty * queued[i] / (el[i].capacity or 1)
    return out, fill


def _fill_value(el: Sequence[Candidate], unknown: UnknownTtft) -> float:
    """The TTFT assumed for unmeasured nodes: median or best of the measured ones, 0 if none.

    The median is taken over at most :data:`MEDIAN_SAMPLE` evenly spaced entries: sorting 10,000
    floats costs about a millisecond, and an assumed value needs no more precision than that.
    """
    if unknown == "median":
        step = max(1, len(el) // MEDIAN_SAMPLE)
        sample = [c.ttft_ms for c in el[::step] if c.ttft_ms is not None]
        if sample:
            return statistics.median(sample)
    known = [c.ttft_ms for c in el if c.ttft_ms is not None]
    if not known:
        return 0.0
    return statistics.median(known) if unknown == "median" else min(known)


def ttft_lookup(el: Sequence[Candidate], unknown: UnknownTtft, queue_penalty: float) -> KeysAt:
    """Like :func:`expected_ttfts`, computed only for the indices asked (tie-breaks need a few)."""
    fill: list[float] = []  # computed on the first unmeasured node met

    def at(indices: Iterable[int]) -> list[float]:
        out = []
        for i in indices:
            c = el[i]
            t = c.ttft_ms
            if t is None:
                if not fill:
                    fill.append(_fill_value(el, unknown))
                t = fill[0]
            if queue_penalty and c.queued:
                t *= 1.0 + queue_penalty * c.queued / (c.capacity or 1)
            out.append(t)
        return out

    return at


def order_indices(primary: Sequence[float], *tiebreaks: Sequence[float] | KeysAt) -> list[int]:
    """Indices in ascending ``(primary, *tiebreaks)`` order; full ties keep snapshot order.

    A tie-break may be a list aligned with ``primary`` or a function returning the keys of the
    indices it is given, so costly tie-break keys are computed only where the order needs them.

    Up to :data:`FULL_SORT_MAX` entries everything is sorted. Above it, only the head is: every
    entry whose primary key is at most the :data:`SORTED_HEAD`-th smallest (so ties at the cut are
    all in), sorted by the full key; the rest follow in snapshot order, which the gateway never
    reaches. Entries that do not compare (NaN) land in the tail, so the result is always a
    permutation.
    """
    n = len(primary)
    if n <= FULL_SORT_MAX:  # small: materialise lazy keys and sort once by tuples
        keys = [tb(range(n)) if callable(tb) else tb for tb in tiebreaks]
        full = list(zip(primary, *keys, strict=True)) if keys else primary
        return sorted(range(n), key=full.__getitem__)
    cut = heapq.nsmallest(SORTED_HEAD, primary)[-1]
    head = [i for i, k in enumerate(primary) if k <= cut]
    # Lexicographic order by stable sorts, least significant key first: C-level keys, no tuples.
    for tb in reversed(tiebreaks):
        if callable(tb):
            head.sort(key=dict(zip(head, tb(head), strict=True)).__getitem__)
        else:
            head.sort(key=tb.__getitem__)
    head.sort(key=primary.__getitem__)
    mask = bytearray(b"\x01") * n
    for i in head:
        mask[i] = 0
    head.extend(compress(range(n), mask))
    return head


def spread_band(order: list[int], keys: Sequence[float], width: float, rng: random.Random) -> tuple[list[int], int]:
    """Shuffle the near-best front of ``order`` so equal-enough nodes share the load.

    The band holds the leading entries whose key is within ``width`` of the best. Up to
    :data:`SPREAD` of them, chosen uniformly at random, go first in random order; the rest of the
    band keeps its sorted order. Returns the new order and the band size.
    """
    if not order:
        return order, 0
    limit = keys[order[0]] + width
    band = 0
    stop = min(len(order), SORTED_HEAD)
    while band < stop and keys[order[band]] <= limit:
        band += 1
    if band < 2:
        return order, band
    picked = rng.sample(range(band), min(band, SPREAD))
    chosen = set(picked)
    front = [order[i] for i in picked]
    front.extend(order[i] for i in range(band) if i not in chosen)
    front.extend(order[band:])
    return front, band


def build_decision(
    strategy: str,
    el: Sequence[Candidate],
    order: Sequence[int],
    *,
    summary: str,
    explain: int,
    describe: Callable[[int], str],
    rest: Sequence[Candidate] = (),
) -> Decision:
    """Assemble a :class:`Decision` with a summary line and one reason per explained rank.

    Only the first ``explain`` ranks get a line (formatting is the costliest per-node step and the
    debug header is short); a last line counts the unexplained rest.
    """
    ordered: tuple[Candidate, ...] = tuple(map(el.__getitem__, order)) if len(order) < 2 else itemgetter(*order)(el)
    if rest:
        ordered += tuple(rest)
        summary += f", scored a random sample of {len(el)}, {len(rest)} unscored follow in snapshot order"
    reasons = [f"{strategy}: {len(ordered)} candidates, {summary}"]
    shown = min(explain, len(order))
    reasons.extend(f"#{rank + 1} {el[i].peer_id}: {describe(i)}" for rank, i in enumerate(order[:shown]))
    if len(ordered) > shown:
        reasons.append(f"... {len(ordered) - shown} more ranked, not explained (routing.params.{strategy}.explain)")
    return Decision(ordered=ordered, strategy=strategy, reasons=tuple(reasons))
