"""Everything a gateway knows about whom to trust, behind one object the request path asks.

:class:`GatewayTrust` ties together admission (who may take part), the canary prober (what nodes
really serve), standings (probation, trusted, quarantined) and reputation (one decaying score per
node). The request path only calls cheap, synchronous methods (:meth:`GatewayTrust.routable`,
:meth:`GatewayTrust.reputation`, :meth:`GatewayTrust.request_failed` ...); the prober runs as a
background task started by :meth:`GatewayTrust.lifespan`.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tooti.trust.admission import Admission
from tooti.trust.admitted_network import AdmittedNetwork
from tooti.trust.prober import Prober
from tooti.trust.reputation import Reputation
from tooti.trust.standing import Standings

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Iterator, Sequence

    from prometheus_client.metrics_core import Metric

    from tooti.config.model import Config
    from tooti.gateway.observations import Observations
    from tooti.network import Network
    from tooti.routing.protocol import Candidate

__all__ = ["GatewayTrust"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound="Candidate")

_FAILURE_WEIGHT = 0.5
_SUCCESS_WEIGHT = 0.05
_MALFORMED_WEIGHT = 5.0


class GatewayTrust:
    """A gateway's admission, verification, standings and reputation.

    Args:
        config: ``gateway.admission``, ``gateway.verification`` and ``timeouts`` are used.
        network: the real network; :attr:`network` is the view the gateway must use instead.
        rng: randomness for probation sampling and canaries (tests seed it).
    """

    def __init__(self, config: Config, network: Network, *, rng: random.Random | None = None) -> None:
        section = config.gateway.verification
        self.admission = Admission(config.gateway.admission)
        self.network: Network = network if self.admission.is_open else AdmittedNetwork(network, self.admission)
        self.verification = section
        self.reputation_book = Reputation(section.reputation_half_life_sec)
        self.standings = Standings(section, self.reputation_book.score, rng=rng)
        self.total_request_sec = config.timeouts.total_request_sec
        self._rng = rng
        self.prober: Prober | None = None
        self.outcomes: dict[str, int] = {"pass": 0, "fail": 0, "inconclusive": 0}

    # -- request path (synchronous, no I/O) ------------------------------------------------------

    def routable(self, candidates: Sequence[C]) -> list[C]:
        """The candidates user requests may go to (quarantine, probation share, reputation floor)."""
        if not self.verification.enabled:
            floor = self.verification.min_reputation
            good = [c for c in candidates if self.reputation_book.score(c.peer_id) >= floor]
            return good or list(candidates)
        return self.standings.routable(candidates)

    def reputation(self, peer_id: str) -> float:
        """The node's reputation, 0..1 (0.5 without evidence)."""
        return self.reputation_book.score(peer_id)

    def request_failed(self, peer_id: str) -> None:
        """A user request to the node failed (connection, timeout, 5xx): a little bad evidence."""
        self.reputation_book.bad(peer_id, _FAILURE_WEIGHT)

    def request_succeeded(self, peer_id: str) -> None:
        """A user request to the node completed."""
        self.reputation_book.good(peer_id, _SUCCESS_WEIGHT)

    def malformed_answer(self, peer_id: str, why: str) -> None:
        """The node sent a frame that failed the shape checks on a user request: quarantine it."""
        self.reputation_book.bad(peer_id, _MALFORMED_WEIGHT)
        if self.verification.enabled:
            self.standings.failed(peer_id, f"malformed answer to a request: {why}")

    def describe(self, peer_id: str) -> dict[str, Any]:
        """The node's trust fields for ``/v1/network/nodes`` and ``tooti network peers``."""
        out: dict[str, Any] = {"reputation": round(self.reputation(peer_id), 3)}
        if self.verification.enabled:
            s = self.standings.get(peer_id)
            out.update(standing=s.state, standing_reason=s.reason, checks=s.checks, failed_checks=s.failures)
        return out

    # -- lifecycle -----------------------------------------------------------------------------

    def _count(self, peer_id: str, outcome: str) -> None:
        del peer_id
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    @asynccontextmanager
    async def lifespan(self, observations: Observations | None = None) -> AsyncIterator[None]:
        """Run the prober (when verification is enabled) for as long as the context is open."""
        if not self.verification.enabled:
            yield
            return
        self.prober = Prober(
            self.network,
            self.verification,
            self.standings,
            self.reputation_book,
            observations,
            total_request_sec=self.total_request_sec,
            on_outcome=self._count,
            rng=self._rng,
        )
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.prober.run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    def collector(self) -> Collector:
        """Prometheus metrics: canary outcomes, nodes per standing, non-admitted peers."""
        return _TrustCollector(self)


class _TrustCollector(Collector):
    def __init__(self, trust: GatewayTrust) -> None:
        self._trust = trust

    def collect(self) -> Iterator[Metric]:
        t = self._trust
        canaries = CounterMetricFamily("tooti_gateway_canaries", "Canary checks by outcome", labels=["outcome"])
        for outcome, n in sorted(t.outcomes.items()):
            canaries.add_metric([outcome], n)
        yield canaries
        standing = GaugeMetricFamily(
            "tooti_gateway_node_standing", "Nodes by standing (1 per node)", labels=["peer_id", "standing"]
        )
        for peer, s in sorted(t.standings.table().items()):
            standing.add_metric([peer, s.state], 1)
        yield standing
        refused = getattr(t.network, "refused", 0)
        yield GaugeMetricFamily("tooti_gateway_nodes_not_admitted", "Peers seen and refused by admission", refused)
