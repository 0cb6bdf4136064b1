"""The gateway's long-lived state and the routing decision for one request."""

from __future__ import annotations

import heapq
import random
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec

from tooti.gateway.api_errors import ApiError, context_length_message
from tooti.gateway.candidates import candidate_for
from tooti.gateway.model_lookup import ProviderLookup
from tooti.gateway.observations import Observations
from tooti.gateway.request_hooks import RequestHooks
from tooti.gateway.strategies import StrategyResolver, UnknownStrategy
from tooti.network_capabilities import capabilities_of
from tooti.routing.affinity import PrefixAffinity
from tooti.routing.context_fit import largest_context, needed_context
from tooti.routing.eligibility import eligible
from tooti.routing.load import load_ratio
from tooti.routing.ordering import cooling_last, with_reserve
from tooti.routing.prices import total_price
from tooti.routing.table import HEAD_PER_KEY, RANDOM_PICKS, SMALL, RouteTable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tooti.config.model import Config
    from tooti.gateway.metrics import GatewayMetrics
    from tooti.network import Network
    from tooti.plugins.host import PluginHost
    from tooti.routing.protocol import Candidate, Decision, Preferences

__all__ = ["RETRY_AFTER_S", "Gateway"]

RETRY_AFTER_S = 5
"""``Retry-After`` of a 503 for a known model with no node able to take the request now."""
_HOUSEKEEPING_S = 1.0


def _bounded(cands: list[Candidate], rng: random.Random) -> list[Candidate]:
    """At most a shortlist's worth of ``cands``: the best by load, TTFT and price, plus a random few."""
    if len(cands) <= SMALL:
        return cands
    best: dict[str, Candidate] = {}
    keys: tuple[Callable[[Candidate], float], ...] = (
        load_ratio,
        lambda c: c.ttft_ms if c.ttft_ms is not None else float("inf"),
        total_price,
    )
    for key in keys:
        best.update((c.peer_id, c) for c in heapq.nsmallest(HEAD_PER_KEY, cands, key=key))
    at = rng.randrange(len(cands) - RANDOM_PICKS + 1)
    best.update((c.peer_id, c) for c in cands[at : at + RANDOM_PICKS])
    return sorted(best.values(), key=attrgetter("peer_id"))


def _no_capacity(model: str) -> ApiError:
    return ApiError(
        503,
        f"no node can serve model {model!r} right now; retry shortly",
        code="no_capacity",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def _none_eligible(pool: list[Candidate], prefs: Preferences) -> ApiError:
    """400 ``context_length_exceeded`` when only the context rule excluded ``pool``, else 503."""
    if prefs.context_tokens and eligible(pool, msgspec.structs.replace(prefs, context_tokens=0)):
        return ApiError(
            400,
            context_length_message(prefs.context_tokens, largest_context(pool), estimated=True),
            code="context_length_exceeded",
        )
    return ApiError(503, f"no node for {prefs.model!r} matches the routing preferences", code="no_eligible_node")


class Gateway:
    """Everything the request handlers share: network, strategies, observations, metrics, config."""

    def __init__(self, config: Config, network: Network, plugin_host: PluginHost, metrics: GatewayMetrics) -> None:
        self.config = config
        self.network = network
        self.metrics = metrics
        self.observations = Observations(config.routing.cooldown_sec)
        self.hooks = RequestHooks()
        """Frame checks and completion callbacks (see :mod:`tooti.gateway.request_hooks`)."""
        self.trust_filter: Callable[[list[Candidate]], list[Candidate]] | None = None
        self.trust_reserve: Callable[[list[Candidate]], list[Candidate]] | None = None
        """Candidates the trust filter left out that may still take a request every other node failed
        (never quarantined ones): ranked after everything else, so failover does not end early."""
        """The last say over eligible candidates (probation share, reputation floor; :mod:`tooti.trust`)."""
        self.trust_settle: Callable[[list[str]], Awaitable[bool]] | None = None
        """Waits (bounded) while every node of a decision awaits its first check; ``True`` if it waited."""
        self.strategies = StrategyResolver(plugin_host, config.routing.strategy, config.routing.params)
        extras = capabilities_of(network)
        self.providers = ProviderLookup(extras.find_providers)
        self._network_table = extras.route_table
        aff = config.routing.affinity
        self.affinity = PrefixAffinity(
            table_size=aff.table_size if aff.enabled else 0,
            chunk_bytes=aff.chunk_bytes,
            max_prefix_bytes=aff.max_prefix_kib * 1024,
            load_ratio=aff.load_ratio,
            load_margin=aff.load_margin,
        )
        """Which node served which prompt prefix (``routing.affinity``); the failover loop feeds it."""
        self._mirror = RouteTable(float("inf"))
        self._rng = random.Random()
        self._next_housekeeping = 0.0

    def route_table(self) -> RouteTable:
        """Where decisions read nodes from: the network's own table, or a mirror of ``nodes()``.

        A p2p network prepares routing data as heartbeats arrive (``route_table()``); an in-process
        network without one (tests, ``tooti.node.local``) is mirrored per decision, which is O(n) and
        fine for the handful of nodes such networks hold.
        """
        if self._network_table is not None:
            return self._network_table()
        self._mirror.sync(self.network.nodes())
        return self._mirror

    def _housekeeping(self, table: RouteTable, now: float) -> None:
        """Once a second: forget observations of peers that left (bounded memory)."""
        self._next_housekeeping = now + _HOUSEKEEPING_S
        if len(self.observations) > len(table) + 16:
            self.observations.forget_except({v.peer_id for v in table.views()})

    def no_node(self, model: str, table: RouteTable) -> ApiError:
        """503 ``no_capacity`` for a model served recently (or found in the DHT), else 404."""
        if table.served_recently(model) or self.providers.remembered(model):
            return _no_capacity(model)
        return ApiError(404, f"model {model!r} does not exist on this network", param="model", code="model_not_found")

    def for_request(self, prefs: Preferences, kind: str, body: dict[str, Any]) -> Preferences:
        """``prefs`` with what routing reads from the request itself: its context need and prefix keys."""
        return msgspec.structs.replace(
            prefs, context_tokens=needed_context(kind, body), prefix_keys=self.affinity.keys(kind, prefs.model, body)
        )

    async def route(self, prefs: Preferences) -> Decision:
        """:meth:`decide`, and before a 404 one bounded DHT lookup of the model (the request path's call).

        Right after a gateway starts, or once every node of a model went silent, the registry does
        not know the model; nodes' DHT provider records still do, and then the answer is 503
        ``no_capacity`` with ``Retry-After``, not 404 (see :mod:`tooti.gateway.model_lookup`).
        Routable requests never reach the lookup.
        """
        try:
            decision = self.decide(prefs)
            if self.trust_settle is not None and await self.trust_settle(decision.peer_ids):
                decision = self.decide(prefs)  # a verdict came in while waiting: decide on it
            return decision
        except ApiError as exc:
            if exc.code != "model_not_found":
                raise
            if await self.providers.provided(prefs.model):
                raise _no_capacity(prefs.model) from None
            raise

    def decide(self, prefs: Preferences) -> Decision:
        """Order the nodes that may serve ``prefs.model``; raise 404/503/400 when none may.

        Eligibility is decided here, once, with :func:`tooti.routing.eligible`; the strategy only
        ranks what passed. Nodes in cooldown stay in the order, after the others: refusing them
        outright would turn one transient failure into an outage of ``cooldown_sec`` (a LiteLLM
        complaint), and a client could steer all traffic by getting one node cooled.
        """
        try:
            strategy = self.strategies.get(prefs.strategy)
        except UnknownStrategy as exc:
            raise ApiError(400, str(exc), param="tooti.strategy", code="invalid_preference") from None
        table = self.route_table()
        now = table.clock()
        if now >= self._next_housekeeping:
            self._housekeeping(table, now)
        entries = table.select(prefs.model, now, only=prefs.only)
        if not entries and (prefs.only is None or not table.count(prefs.model)):
            raise self.no_node(prefs.model, table)
        obs = self.observations
        obs_now = obs.now()
        model = prefs.model
        pool = [candidate_for(e, model, obs, obs_now) for e in entries]
        cands = eligible(pool, prefs)
        if not cands and table.count(model) > len(entries):
            # A narrowing preference (price, region, ignore, context) excluded the whole shortlist: look at all.
            pool = [candidate_for(e, model, obs, obs_now) for e in table.select_all(model, now)]
            cands = _bounded(eligible(pool, prefs), self._rng)
        if not cands:
            raise _none_eligible(pool, prefs)
        reserve: list[Candidate] = []
        if self.trust_filter is not None:
            allowed = self.trust_filter(cands)
            if self.trust_reserve is not None:
                ids = {c.peer_id for c in allowed}
                reserve = [c for c in self.trust_reserve(cands) if c.peer_id not in ids]
            cands = allowed
            if not cands:
                raise ApiError(503, f"no trusted node serves model {model!r} right now", code="no_trusted_node")
        decision = strategy.rank(cands, prefs)
        if not decision.ordered:
            raise ApiError(503, f"no node for {model!r} matches the routing preferences", code="no_eligible_node")
        decision = cooling_last(self.affinity.prefer(decision, prefs))
        return with_reserve(decision, cooling_last(strategy.rank(reserve, prefs))) if reserve else decision
