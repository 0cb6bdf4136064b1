"""The gateway's own membership certificate, presented with every request it sends.

Nodes in ``node.admission.mode: membership`` serve only gateways whose request carries a certificate
signed by an authority they trust (and issued to the gateway's peer id, which the node reads from the
authenticated libp2p connection). The certificate rides in :attr:`InferRequest.certificate`
(a few hundred bytes; the node verifies it once per gateway and caches the verdict).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.network import Network, NodeView
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["CertifiedNetwork"]


class CertifiedNetwork:
    """A :class:`~tooti.network.Network` that attaches ``certificate`` to every request.

    Args:
        inner: the network to send through.
        certificate: the gateway's certificate text (``gateway.admission.certificate_file``).
    """

    def __init__(self, inner: Network, certificate: str) -> None:
        self.inner = inner
        self.certificate = certificate

    def __getattr__(self, name: str) -> object:
        # Extras of the inner network (route_table, listen_addrs, heartbeat_counts ...) stay reachable.
        return getattr(self.inner, name)

    @property
    def peer_id(self) -> str:
        """This process's own peer id."""
        return self.inner.peer_id

    def nodes(self) -> list[NodeView]:
        """The inner network's nodes."""
        return self.inner.nodes()

    def infer(self, peer_id: str, request: InferRequest) -> AsyncIterator[ResponseFrame]:
        """Send ``request`` with the certificate attached."""
        return self.inner.infer(peer_id, msgspec.structs.replace(request, certificate=self.certificate))
