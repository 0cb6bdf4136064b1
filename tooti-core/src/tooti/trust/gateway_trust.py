"""Everything a gateway knows about whom to trust, behind one object the request path asks.

:class:`GatewayTrust` ties together admission (who may take part), the canary prober (what nodes
really serve), standings (probation, trusted, quarantined) and reputation (one decaying score per
node). The request path only calls cheap, synchronous methods (:meth:`GatewayTrust.routable`,
:meth:`GatewayTrust.reputation`, :meth:`GatewayTrust.request_failed` ...); the prober runs as a
background task started by :meth:`GatewayTrust.lifespan`.
"""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from tooti.errors import MalformedResponse
from tooti.network_capabilities import capabilities_of
from tooti.trust.admission import Admission
from tooti.trust.admitted_network import AdmittedNetwork
from tooti.trust.frame_check import FrameCheck
from tooti.trust.identity_rate import IdentityRate
from tooti.trust.membership import read_certificate_file
from tooti.trust.organic_audit import Completion as AuditedCompletion
from tooti.trust.organic_audit import OrganicAudit
from tooti.trust.prober import NodeLoad, Prober
from tooti.trust.reputation import Reputation
from tooti.trust.standing import Standings
from tooti.trust.standing_ledger import StandingLedger

if TYPE_CHECKING:
    import random
    from collections.abc import AsyncIterator, Callable, Iterator, Sequence

    from prometheus_client.metrics_core import Metric

    from tooti.accounting.store import AccountingStore
    from tooti.config.model import Config
    from tooti.network import Network
    from tooti.routing.protocol import Candidate
    from tooti.trust.prober import CanarySender
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["GatewayTrust"]

log = logging.getLogger(__name__)

C = TypeVar("C", bound="Candidate")

_FAILURE_WEIGHT = 0.5
_SUCCESS_WEIGHT = 0.05
_MALFORMED_WEIGHT = 5.0
_SETTLE_POLL_S = 0.02


class Observations(NodeLoad, Protocol):
    """What trust uses of the gateway's per-node counters (declared here: trust names no gateway type)."""

    def set_reputation(self, peer_id: str, reputation: float) -> None:
        """The score routing reads for ``peer_id``."""
        ...


class Completion(AuditedCompletion, Protocol):
    """What trust reads of how a client request ended: an audit's fields and whether the node was at fault."""

    @property
    def node_fault(self) -> bool: ...


class GatewayTrust:
    """A gateway's admission, verification, standings and reputation.

    Args:
        config: ``gateway.admission``, ``gateway.verification`` and ``timeouts`` are used.
        network: the real network; :attr:`network` is the view the gateway must use instead.
        rng: randomness for probation sampling and canaries (tests seed it).
        store: where standings and verdicts persist and are shared with other gateways (``None`` =
            memory only: a restart forgets every verdict).
        source_of: the observed source address of a peer's connection, for the admission rate of new
            identities; default the network's declared ``remote_host`` extra
            (:class:`~tooti.network_capabilities.NetworkCapabilities`) where it offers one.
    """

    def __init__(
        self,
        config: Config,
        network: Network,
        *,
        rng: random.Random | None = None,
        store: AccountingStore | None = None,
        source_of: Callable[[str], str | None] | None = None,
    ) -> None:
        section = config.gateway.verification
        self.admission = Admission(config.gateway.admission)
        own = config.gateway.admission.certificate_file
        certificate = read_certificate_file(own, "gateway.admission.certificate_file") if own else None
        admits_all = self.admission.is_open and certificate is None
        self.admitted = None if admits_all else AdmittedNetwork(network, self.admission, certificate)
        """The admission view of the network (``None`` when admission is open and no certificate is sent)."""
        self.network: Network = network if self.admitted is None else self.admitted
        self.verification = section
        self.reputation_book = Reputation(section.reputation_half_life_sec)
        if source_of is None:
            source_of = capabilities_of(network).remote_host
        self.identities: IdentityRate | None = None
        if source_of is not None and section.new_identities_per_source > 0:
            self.identities = IdentityRate(section.new_identities_per_source, section.new_identity_window_sec)
        self.standings = Standings(
            section, self.reputation_book.score, rng=rng, identities=self.identities, source_of=source_of
        )
        self.store = store
        self.ledger: StandingLedger | None = None
        self.total_request_sec = config.timeouts.total_request_sec
        self.log_content = config.gateway.log_content
        self._rng = rng
        self.prober: Prober | None = None
        self.outcomes: dict[str, int] = {"pass": 0, "fail": 0, "inconclusive": 0}
        self._observations: Observations | None = None
        self._pushed: dict[str, float] = {}
        self.audit = OrganicAudit(
            section,
            self.network,
            self.standings,
            self.reputation_book,
            total_request_sec=self.total_request_sec,
            on_outcome=lambda peer, _outcome: self._push(peer),
            rng=rng,
        )
        """Audits of sampled user requests on references (:mod:`tooti.trust.organic_audit`)."""

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
        awaiting = self.standings.awaiting
        if awaiting:
            now = time.monotonic()
            for peer in [p for p, by in awaiting.items() if by <= now]:
                del awaiting[peer]
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
        """The candidates a request may fall back to when the routable ones all failed: all but quarantined or held."""
        if not self.verification.enabled:
            return list(candidates)
        return [
            c
            for c in candidates
            if self.standings.state(c.peer_id) != "quarantined" and not self.standings.held(c.peer_id)
        ]

    async def settle(self, peer_ids: Sequence[str]) -> bool:
        """Wait (bounded by ``first_check_wait_sec``) while every node a request could go to awaits its first check.

        Verifying new nodes before their first user requests is what keeps an instant liar from
        grabbing a gateway's first seconds of traffic: while no node of the model has a verdict
        yet, a request waits for the first one (about a canary's duration), then is routed on it.
        O(1) when no node is awaiting its first check. Returns whether it waited.
        """
        if not self.verification.enabled or not self.standings.awaiting:
            return False
        waited = False
        while (wait := self.standings.settled(peer_ids)) > 0:
            waited = True
            await anyio.sleep(min(wait, _SETTLE_POLL_S))
        return waited

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
            self.standings.failed(peer_id, f"malformed answer to a request: {why}", "malformed")
        self._push(peer_id)

    def frame_check(self, request: InferRequest, peer_id: str) -> Callable[[ResponseFrame], None]:
        """The per-attempt frame check (``gw.hooks.frame_checks``): shapes, bounds, error texts.

        A frame that fails it is a node failure on the request path (failover before the first
        token) and, here, a quarantine: no honest node sends an ``Ext`` value or 2^63 tokens.
        For the sampled share of attempts, a checked frame is also kept for an audit.
        """
        check = FrameCheck(peer_id, request.kind, log_detail=self.log_content)
        keep = self.audit.frame_check(request, peer_id) if self.verification.enabled else None

        def run(frame: ResponseFrame) -> None:
            try:
                check(frame)
            except MalformedResponse as exc:
                self.malformed_answer(peer_id, exc.message)
                raise

        if keep is None:
            return run

        def run_and_keep(frame: ResponseFrame) -> None:
            run(frame)
            keep(frame)

        return run_and_keep

    def completed(self, completion: Completion) -> None:
        """Per client request (``gw.hooks.on_complete``): evidence for the answering node's reputation."""
        self.audit.completed(completion)
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
            st = self.standings
            s = st.get(peer_id)
            out.update(
                standing=s.state,
                standing_reason=s.reason,
                standing_kind=s.kind,
                checks=s.checks,
                failed_checks=s.failures,
                confirmed_checks=s.corroborated,
                vote_weight=st.weight(peer_id),
                reference=s.reference,
                held=s.held_until > 0,
                verdicts=[n.as_dict() for n in reversed(s.recent)],
                **self.audit.describe(peer_id),
            )
            if self.identities is not None:
                out["source"] = self.identities.source_of(peer_id)
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
        self,
        observations: Observations | None = None,
        *,
        want_receipt: bool = False,
        send: CanarySender | None = None,
    ) -> AsyncIterator[None]:
        """Run the prober (when verification is enabled) and the reputation feed while open.

        ``want_receipt`` mirrors what user requests ask for, so canaries look the same on the wire;
        ``send`` is the gateway's node attempt, through which canaries go exactly like user requests
        (required when verification is enabled).
        """
        if self.verification.enabled and send is None:
            raise ValueError("verification needs the gateway's canary sender")
        if observations is not None:
            self.observe(observations)
        if self.store is not None and self.verification.enabled:
            gateway_id = _own_id(self.network)
            self.ledger = StandingLedger(self.store, self.standings, self.reputation_book, gateway_id)
            try:
                loaded = await anyio.to_thread.run_sync(self.ledger.load)
                log.info("node standings: %d loaded from the store", loaded)
            except Exception as exc:  # noqa: BLE001 - serve with memory-only standings rather than not at all
                log.warning("node standings: loading from the store failed: %s", type(exc).__name__)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._refresh_loop)
            if self.ledger is not None:
                tg.start_soon(self.ledger.run)
            if self.verification.enabled and send is not None:
                self.prober = Prober(
                    self.network,
                    send,
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
                self.audit.want_receipt = want_receipt
                if self.audit.enabled:
                    tg.start_soon(self.audit.run)
            try:
                yield
            finally:
                tg.cancel_scope.cancel()

    def collector(self) -> Collector:
        """Prometheus metrics: canary outcomes, nodes per standing, non-admitted peers."""
        return _TrustCollector(self)


def _own_id(network: Network) -> str:
    """This gateway's peer id (who wrote a standing), or a per-process name before the network is up."""
    try:
        return str(network.peer_id)
    except RuntimeError:
        return f"gateway-{id(network):x}"


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
            "tooti_gateway_node_standing",
            "Nodes by standing and why (1 per node)",
            labels=["peer_id", "standing", "reason"],
        )
        for peer, s in sorted(t.standings.table().items()):
            standing.add_metric([peer, s.state, s.kind], 1)
        yield standing
        verdicts = CounterMetricFamily(
            "tooti_gateway_verdicts", "Check verdicts on nodes by outcome and reason", labels=["outcome", "reason"]
        )
        for (outcome, kind), n in sorted(t.standings.verdicts.items()):
            verdicts.add_metric([outcome, kind], n)
        yield verdicts
        audits = CounterMetricFamily(
            "tooti_gateway_audits", "Audits of sampled user requests on references by outcome", labels=["outcome"]
        )
        for outcome, n in sorted(t.audit.outcomes.items()):
            audits.add_metric([outcome], n)
        yield audits
        yield CounterMetricFamily(
            "tooti_gateway_audit_replays", "One-token replays sent to references for audits", t.audit.replays
        )
        held = t.identities.held if t.identities is not None else 0
        yield CounterMetricFamily(
            "tooti_gateway_identities_held", "New node identities held by the per-source admission rate", held
        )
        refused = t.admitted.refused if t.admitted is not None else 0
        yield GaugeMetricFamily("tooti_gateway_nodes_not_admitted", "Peers seen and refused by admission", refused)
