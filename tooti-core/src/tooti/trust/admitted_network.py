"""The network as this gateway's admission sees it: only admitted nodes, with its certificate.

Non-admitted nodes do not exist, and every request carries the gateway's own membership certificate
when it has one.

Wrapping :class:`tooti.network.Network` (rather than filtering in each caller) makes the rule hold
everywhere at once: the model list, the node table, routing, the prober and :meth:`infer` (which
refuses a non-admitted peer without sending anything, should a request name one through
``tooti.only``). In ``membership`` mode a certificate that lists models also narrows what the node
is believed to serve.

The certificate (``gateway.admission.certificate_file``) is what nodes in ``node.admission.mode:
membership`` ask of a gateway: signed by an authority they trust and issued to the gateway's peer id
(read from the authenticated libp2p connection). It rides in :attr:`InferRequest.certificate` (a few
hundred bytes; the node verifies it once per gateway and caches the verdict). Both rules are the
gateway's admission and live in one view, one stop on the request's way to the p2p network.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgspec

from tooti.errors import BackendUnavailable
from tooti.network_capabilities import capabilities_of

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.network import Network, NodeView
    from tooti.network_capabilities import NetworkCapabilities
    from tooti.trust.admission import Admission
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["AdmittedNetwork", "certificate_of"]

log = logging.getLogger(__name__)


def certificate_of(node: NodeView) -> str | None:
    """The membership certificate a node announced, if the heartbeat carried one."""
    return node.certificate


class AdmittedNetwork:
    """A :class:`~tooti.network.Network` that hides and refuses non-admitted nodes, certificate attached.

    Args:
        inner: the real network.
        admission: the gateway's admission policy (open admission hides and refuses nothing).
        certificate: the gateway's certificate text, attached to every request (``None``: none).
    """

    def __init__(self, inner: Network, admission: Admission, certificate: str | None = None) -> None:
        self.inner = inner
        self.admission = admission
        self.certificate = certificate
        self._open = admission.is_open
        self._narrowed: dict[str, tuple[object, NodeView]] = {}
        self._refused: set[str] = set()
        self._ok: set[str] = set()
        """Peers admitted at their last look (the request path checks this set, no scan)."""

    @property
    def capabilities(self) -> NetworkCapabilities:
        """The real network's extras except its route table.

        The p2p route table holds every node that sent a heartbeat, admitted or not. Without it the
        gateway routes over a mirror of :meth:`nodes` (O(admitted nodes) per decision, small for
        the private pools admission is for). Open admission hides nothing, so it keeps the table.
        """
        capabilities = capabilities_of(self.inner)
        return capabilities if self._open else capabilities.without_route_table()

    @property
    def peer_id(self) -> str:
        """This process's own peer id."""
        return self.inner.peer_id

    @property
    def refused(self) -> int:
        """Distinct peers seen and not admitted (for metrics)."""
        return len(self._refused)

    def _admitted_view(self, node: NodeView) -> NodeView | None:
        verdict = self.admission.verdict(node.peer_id, certificate_of(node))
        if not verdict.admitted:
            self._ok.discard(node.peer_id)
            if node.peer_id not in self._refused and len(self._refused) < 10_000:
                self._refused.add(node.peer_id)
                log.warning("node %s is not admitted: %s", node.peer_id, verdict.reason)
            return None
        if len(self._ok) < 100_000:
            self._ok.add(node.peer_id)
        cert = verdict.certificate
        if cert is None or not cert.models:
            return node
        hit = self._narrowed.get(node.peer_id)
        if hit is not None and hit[0] is node.models:
            return msgspec.structs.replace(hit[1], age_s=node.age_s, in_flight=node.in_flight, queued=node.queued)
        allowed = tuple(m for m in node.models if cert.allows_model(m.name))
        narrowed = msgspec.structs.replace(node, models=allowed)
        self._narrowed[node.peer_id] = (node.models, narrowed)
        return narrowed

    def nodes(self) -> list[NodeView]:
        """Live, admitted nodes."""
        if self._open:
            return self.inner.nodes()
        out = []
        for node in self.inner.nodes():
            view = self._admitted_view(node)
            if view is not None:
                out.append(view)
        return out

    def infer(self, peer_id: str, request: InferRequest) -> AsyncIterator[ResponseFrame]:
        """Send to an admitted node, with the certificate; a non-admitted one is refused before anything is sent."""
        if not self._open and peer_id not in self._ok:
            node = next((n for n in self.inner.nodes() if n.peer_id == peer_id), None)
            if node is None or self._admitted_view(node) is None:
                return _refuse(peer_id)
        if self.certificate is not None:
            request = msgspec.structs.replace(request, certificate=self.certificate)
        return self.inner.infer(peer_id, request)


async def _refuse(peer_id: str) -> AsyncIterator[ResponseFrame]:
    raise BackendUnavailable(f"node {peer_id} is not admitted by this gateway")
    yield  # type: ignore[unreachable]  # makes this an async generator
