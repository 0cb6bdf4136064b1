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

from tooti.errors import MalformedResponse
from tooti.trust.admission import Admission
from tooti.trust.admitted_network import AdmittedNetwork
from tooti.trust.certified_network import CertifiedNetwork
from tooti.trust.frame_check import FrameCheck
from tooti.trust.membership import read_certificate_file
from tooti.trust.prober import Prober
from tooti.trust.reputation import Reputation
from tooti.trust.standing import Standings

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence

    from prometheus_client.metrics_core import Metric

    from tooti.config.model import Config
    from tooti.gateway.observations import Observations
    from tooti.gateway.request_hooks import Completion
    from tooti.network import Network
    from tooti.routing.protocol import Candidate
    from tooti.wire.infer import InferRequest, ResponseFrame

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
        own = config.gateway.admission.certificate_file
        if own:
            certificate = read_certificate_file(own, "gateway.admission.certificate_file")
            self.network = CertifiedNetwork(self.network, certificate)
        self.verification = section
        self.reputation_book = Reputation(section.reputation_half_life_sec)
        self.standings = Standings(section, self.reputation_book.score, rng=rng)
        self.total_request_sec = config.timeouts.total_request_sec
        self.log_content = config.gateway.log_content
        self._rng = rng
        self.prober: Prober | None = None
        self.outcomes: dict[str, int] = {"pass": 0, "fail": 0, "inconclusive": 0}
        self._observations: Observations | None = None
        self._pushed: dict[str, float] = {}

    def observe(self, observations: Observations) -> None:
        """Feed reputations into the gateway's observations (routing candidates carry them)."""
        self._observations = observations

    def routing_reputation(self, peer_id: str) -> float:
        """What routing sees: 0 for a quarantined node (never eligible), else the score (at least 0.01)."""
        if self.verification.enabled and self.standings.state(peer_id) == "quarantined":
            return 0.0
        return max(0.01, self.reputation_book.score(peer_id))

    def _push(self, peer_id: str) -> None:
        obs = self._observations
        if obs is None:
            return
        value = self.routing_reputation(peer_id)
        last = self._pushed.get(peer_id)
        if last is None or abs(last - value) >= 0.01 or (value == 0.0) != (last == 0.0):
            self._pushed[peer_id] = value
            obs.set_reputation(peer_id, value)

    def refresh(self) -> None:
        """Push every known node's reputation (decay, quarantines that ended); once a second."""
        peers = set(self.standings.table()) | set(self._pushed)
        for peer in peers:
            self._push(peer)
        if len(self._pushed) > 2 * len(self.standings.table()) + 64:
            self._pushed = {p: v for p, v in self._pushed.items() if p in self.standings.table()}

    # -- request path (synchronous, no I/O) ------------------------------------------------------

    def routable(self, candidates: Sequence[C]) -> list[C]:
        """The candidates user requests may go to (quarantine, probation share, reputation floor)."""
        if not self.verification.enabled:
            floor = self.verification.min_reputation
            good = [c for c in candidates if self.reputation_book.score(c.peer_id) >= floor]
            return good or list(candidates)
        return self.standings.routable(candidates)

    def reserve(self, candidates: Sequence[C]) -> list[C]:
        """The candidates a request may fall back to when the routable ones all failed: all but quarantined."""
        if not self.verification.enabled:
            return list(candidates)
        return [c for c in candidates if self.standings.state(c.peer_id) != "quarantined"]

    def reputation(self, peer_id: str) -> float:
        """The node's reputation, 0..1 (0.5 without evidence)."""
        return self.reputation_book.score(peer_id)

    def request_failed(self, peer_id: str) -> None:
        """A user request to the node failed (connection, timeout, 5xx): a little bad evidence."""
        self.reputation_book.bad(peer_id, _FAILURE_WEIGHT)
        self._push(peer_id)

    def request_succeeded(self, peer_id: str) -> None:
        """A user request to the node completed."""
        self.reputation_book.good(peer_id, _SUCCESS_WEIGHT)
        self._push(peer_id)

    def malformed_answer(self, peer_id: str, why: str) -> None:
        """The node sent a frame that failed the shape checks on a user request: quarantine it."""
        self.reputation_book.bad(peer_id, _MALFORMED_WEIGHT)
        if self.verification.enabled:
            self.standings.failed(peer_id, f"malformed answer to a request: {why}")
        self._push(peer_id)

    def frame_check(self, request: InferRequest, peer_id: str) -> Callable[[ResponseFrame], None]:
        """The per-attempt frame check (``gw.hooks.frame_checks``): shapes, bounds, error texts.

        A frame that fails it is a node failure on the request path (failover before the first
        token) and, here, a quarantine: no honest node sends an ``Ext`` value or 2^63 tokens.
        """
        check = FrameCheck(peer_id, request.kind, log_detail=self.log_content)

        def run(frame: ResponseFrame) -> None:
            try:
                check(frame)
            except MalformedResponse as exc:
                self.malformed_answer(peer_id, exc.message)
                raise

        return run

    def completed(self, completion: Completion) -> None:
        """Per client request (``gw.hooks.on_complete``): evidence for the answering node's reputation."""
        if completion.peer_id is None:
            return
        if completion.status == "ok":
            self.request_succeeded(completion.peer_id)
        elif completion.status == "failed" and completion.node_fault:
            self.request_failed(completion.peer_id)

    def describe(self, peer_id: str) -> dict[str, Any]:
        """The node's trust fields for ``/v1/network/nodes`` and ``tooti network peers``."""
        out: dict[str, Any] = {"reputation": round(self.reputation(peer_id), 3)}
        if self.verification.enabled:
            s = self.standings.get(peer_id)
            out.update(standing=s.state, standing_reason=s.reason, checks=s.checks, failed_checks=s.failures)
        return out

    # -- lifecycle -----------------------------------------------------------------------------

    def _count(self, peer_id: str, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self._push(peer_id)

    async def _refresh_loop(self) -> None:
        while True:
            await anyio.sleep(1.0)
            self.refresh()

    @asynccontextmanager
    async def lifespan(
        self, observations: Observations | None = None, *, want_receipt: bool = False
    ) -> AsyncIterator[None]:
        """Run the prober (when verification is enabled) and the reputation feed while open.

        ``want_receipt`` mirrors what user requests ask for, so canaries look the same on the wire.
        """
        if observations is not None:
            self.observe(observations)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._refresh_loop)
            if self.verification.enabled:
                self.prober = Prober(
                    self.network,
                    self.verification,
                    self.standings,
                    self.reputation_book,
                    self._observations,
                    total_request_sec=self.total_request_sec,
                    want_receipt=want_receipt,
                    on_outcome=self._count,
                    rng=self._rng,
                )
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
