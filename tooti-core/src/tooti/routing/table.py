"""Routing data prepared when a heartbeat arrives, so a decision costs the same at 10 or 10,000 nodes.

A heartbeat becomes a :class:`RouteEntry` once, on arrival: its served names, per-name prices and the
keys strategies care about (load ratio, TTFT, price) are computed then, never per request. The table
keeps a per-model index (name or alias → peers), and entries in the order of their last heartbeat,
so pruning stale nodes walks only the expired ones.

A decision asks :meth:`RouteTable.select` for the nodes of one model. Up to :data:`SMALL` nodes, that
is all of them (sorted by peer id, as before). Above it, a bounded shortlist: the model's *head*
(the :data:`HEAD_PER_KEY` best nodes by heartbeat load, by TTFT and by price, recomputed at most every
:data:`HEAD_TTL_S`) plus :data:`RANDOM_PICKS` consecutive nodes of the index from a random offset (the
index is in no meaningful order, so a window is as good a sample as independent draws, for one
random number), so every node is tried now and then and the gateway's own observations of it count.
The gateway tries at most ``routing.max_attempts`` (≤ 10) nodes, so ranking the whole network would
only sort a tail nobody reaches. The head lags heartbeats by at most a second; the entries in it are always the latest.

Thread-safe: the trio p2p thread writes, the asyncio gateway selects; both hold :attr:`lock` for
microseconds (the head refresh, once a second per large model, for a few milliseconds).
"""

from __future__ import annotations

import heapq
import random
import threading
import time
from operator import attrgetter
from typing import TYPE_CHECKING

import msgspec

from tooti.routing.load import load_ratio
from tooti.routing.prices import models_by_name, total_price

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from tooti.network import NodeView
    from tooti.routing.protocol import Candidate

__all__ = ["HEAD_PER_KEY", "HEAD_TTL_S", "RANDOM_PICKS", "SMALL", "RouteEntry", "RouteTable"]

SMALL = 64
"""Models served by at most this many live nodes give every node to the strategy."""
HEAD_PER_KEY = 8
"""Above :data:`SMALL`, the best this many nodes by each key (load, TTFT, price) are in the head.

The gateway tries at most ``routing.max_attempts`` (≤ 10) nodes, so 8 per key (up to 24 in all)
plus the random picks always leave more candidates than attempts."""
RANDOM_PICKS = 8
"""Above :data:`SMALL`, this many more nodes (a window at a random offset) join each shortlist."""
HEAD_TTL_S = 1.0
"""How long a model's head is reused before it is recomputed from the latest heartbeats."""
MODEL_MEMORY_S = 600.0
"""How long a model name is remembered after the last node serving it was heard (503, not 404)."""

_INF = float("inf")


class RouteEntry:
    """One node as of its last heartbeat, with what routing needs already computed.

    Immutable once built except :attr:`cache`, which only the gateway's thread touches: it holds
    the :class:`~tooti.routing.protocol.Candidate` last built for each model, so a decision reuses it
    until the gateway's observations of the node change (see ``tooti.gateway.candidates``).
    """

    __slots__ = ("by_name", "cache", "load", "names", "peer_id", "seen", "ttft", "view")

    def __init__(self, view: NodeView, seen: float) -> None:
        self.peer_id = view.peer_id
        self.view = view
        self.seen = seen
        self.by_name = models_by_name(view)
        """Each served name or alias → the announced model (price, context length) that owns it."""
        self.names = frozenset(self.by_name)
        self.load = load_ratio(view)
        self.ttft = view.ttft_ms if view.ttft_ms is not None else _INF
        self.cache: dict[str, tuple[Candidate, int, float, object]] = {}

    def total_price(self, model: str) -> float:
        """Input plus output price per 1K tokens of ``model`` on this node (unpriced: free)."""
        owner = self.by_name.get(model)
        return total_price(owner) if owner is not None else 0.0


class _ModelIndex:
    """The peers serving one name, with O(1) insert and removal, and the head of the best ones."""

    __slots__ = ("by_id", "head", "head_at", "peers", "pos")

    def __init__(self) -> None:
        self.peers: list[str] = []
        self.pos: dict[str, int] = {}
        self.head: list[str] = []
        self.head_at = -_INF
        self.by_id: list[str] | None = None  # ``peers`` sorted, until the membership changes

    def sorted_peers(self) -> list[str]:
        if self.by_id is None:
            self.by_id = sorted(self.peers)
        return self.by_id

    def add(self, peer: str) -> None:
        if peer not in self.pos:
            self.pos[peer] = len(self.peers)
            self.peers.append(peer)
            self.by_id = None

    def discard(self, peer: str) -> None:
        at = self.pos.pop(peer, None)
        if at is None:
            return
        self.by_id = None
        last = self.peers.pop()
        if last != peer:  # swap the last peer into the hole
            self.peers[at] = last
            self.pos[last] = at


class RouteTable:
    """Live nodes prepared for routing, indexed by model.

    Args:
        stale_after: seconds of silence after which a node is no longer selected (and pruned).
        clock: monotonic clock in seconds (tests inject one).
        rng: random source of the shortlist's random picks.
    """

    def __init__(
        self,
        stale_after: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self.lock = threading.Lock()
        self._rng = rng or random.Random()
        self._nodes: dict[str, RouteEntry] = {}  # least recently heard first
        self._models: dict[str, _ModelIndex] = {}
        self._last_served: dict[str, float] = {}

    # -- writing (heartbeats) -------------------------------------------------------------------

    def put(self, view: NodeView, now: float | None = None) -> RouteEntry:
        """Record ``view`` as the node's latest state; it replaces everything the node said before."""
        at = self.clock() if now is None else now
        entry = RouteEntry(view, at)
        peer = entry.peer_id
        with self.lock:
            old = self._nodes.pop(peer, None)
            self._nodes[peer] = entry  # re-inserted last: the dict stays in heartbeat order
            if old is None or old.names != entry.names:
                before = old.names if old is not None else frozenset()
                for name in before - entry.names:
                    self._unindex(name, peer)
                for name in entry.names - before:
                    index = self._models.get(name)
                    if index is None:
                        index = self._models[name] = _ModelIndex()
                    index.add(peer)
            for name in entry.names:
                self._last_served[name] = at
        return entry

    def sync(self, views: Iterable[NodeView], now: float | None = None) -> None:
        """Make the table hold exactly ``views``, all heard ``now`` (for networks without a registry).

        A node whose view did not change keeps its entry, and so its prepared candidates.
        """
        at = self.clock() if now is None else now
        seen: set[str] = set()
        for view in views:
            seen.add(view.peer_id)
            old = self._nodes.get(view.peer_id)
            if old is not None and old.view == view:
                old.seen = at
            else:
                self.put(view, at)
        for peer in [p for p in self._nodes if p not in seen]:
            self.remove(peer)

    def _unindex(self, name: str, peer: str) -> None:
        index = self._models.get(name)
        if index is not None:
            index.discard(peer)
            if not index.peers:
                del self._models[name]

    def remove(self, peer: str) -> None:
        """Forget a node now."""
        with self.lock:
            entry = self._nodes.pop(peer, None)
            if entry is not None:
                for name in entry.names:
                    self._unindex(name, peer)

    def prune(self, now: float | None = None) -> list[str]:
        """Drop nodes silent for longer than ``stale_after``; return their peer ids.

        Costs O(expired): entries are kept in heartbeat order, so the walk stops at the first live one.
        """
        at = self.clock() if now is None else now
        dead: list[str] = []
        with self.lock:
            for peer, entry in self._nodes.items():
                if at - entry.seen <= self.stale_after:
                    break
                dead.append(peer)
            for peer in dead:
                entry = self._nodes.pop(peer)
                for name in entry.names:
                    self._unindex(name, peer)
            if len(self._last_served) > 4 * len(self._models) + 64:
                horizon = at - MODEL_MEMORY_S
                for name in [n for n, t in self._last_served.items() if t < horizon]:
                    del self._last_served[name]
        return dead

    # -- reading ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, peer: str) -> RouteEntry | None:
        """The node's entry if it is live, else ``None``."""
        entry = self._nodes.get(peer)
        if entry is None or self.clock() - entry.seen > self.stale_after:
            return None
        return entry

    def views(self) -> list[NodeView]:
        """Every live node's view with its current ``age_s``, sorted by peer id (tables, not routing)."""
        now = self.clock()
        with self.lock:
            entries = list(self._nodes.values())
        return [
            msgspec.structs.replace(e.view, age_s=now - e.seen)
            for e in sorted(entries, key=attrgetter("peer_id"))
            if now - e.seen <= self.stale_after
        ]

    def count(self, model: str) -> int:
        """Nodes indexed under ``model`` (stale ones not yet pruned included)."""
        index = self._models.get(model)
        return len(index.peers) if index is not None else 0

    def served_recently(self, model: str, within: float = MODEL_MEMORY_S) -> bool:
        """Whether some node announced ``model`` within ``within`` seconds (503 rather than 404)."""
        at = self._last_served.get(model)
        return at is not None and self.clock() - at <= within

    def select(self, model: str, now: float, *, only: Iterable[str] | None = None) -> list[RouteEntry]:
        """The live nodes a decision for ``model`` considers: all of a small model, else a shortlist.

        Args:
            model: the requested name or alias.
            now: the current time on :attr:`clock`.
            only: a request's ``only`` list: exactly those peers (when they serve the model).
        """
        with self.lock:
            index = self._models.get(model)
            if index is None:
                return []
            nodes = self._nodes
            if only is not None:
                peers = sorted(p for p in only if p in index.pos)
            elif len(index.peers) <= SMALL:
                peers = index.sorted_peers()
            else:
                if now - index.head_at >= HEAD_TTL_S:
                    self._refresh_head(index, model, now)
                at = self._rng.randrange(len(index.peers) - RANDOM_PICKS + 1)
                peers = list(dict.fromkeys(index.head + index.peers[at : at + RANDOM_PICKS]))
            horizon = now - self.stale_after
            return [e for e in map(nodes.__getitem__, peers) if e.seen >= horizon]

    def select_all(self, model: str, now: float) -> list[RouteEntry]:
        """Every live node serving ``model`` (O(n): only when a preference narrows past the shortlist)."""
        horizon = now - self.stale_after
        with self.lock:
            index = self._models.get(model)
            if index is None:
                return []
            return [e for e in map(self._nodes.__getitem__, index.peers) if e.seen >= horizon]

    def _refresh_head(self, index: _ModelIndex, model: str, now: float) -> None:
        """Recompute the best nodes of ``model`` by load, by TTFT and by price (caller holds the lock)."""
        horizon = now - self.stale_after
        entries = [e for e in map(self._nodes.__getitem__, index.peers) if e.seen >= horizon]
        best: set[str] = set()
        for key in (attrgetter("load"), attrgetter("ttft")):
            best.update(e.peer_id for e in heapq.nsmallest(HEAD_PER_KEY, entries, key=key))
        best.update(e.peer_id for e in heapq.nsmallest(HEAD_PER_KEY, entries, key=lambda e: e.total_price(model)))
        index.head = sorted(best)
        index.head_at = now
