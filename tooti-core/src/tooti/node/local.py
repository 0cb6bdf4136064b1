"""An in-process :class:`tooti.network.Network`: peers are backends in this process, no libp2p.

For fast gateway tests and single-process setups. Requests go straight to
:func:`tooti.node.handler.handle_request`, so frames, errors and cancellation behave as over the
wire (closing the iterator closes the backend stream), minus the transport.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from tooti._aio import closing_iter
from tooti.errors import BackendUnavailable, StreamEnded
from tooti.network import AdvertisedModel, NodeView
from tooti.node.handler import handle_request
from tooti.node.perf import PerfTracker
from tooti.wire.infer import Done, ErrorFrame, InferRequest, ResponseFrame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterable

    from tooti.backends.protocol import InferenceBackend, ModelInfo

__all__ = ["LocalNetwork"]


class _LocalNode:
    def __init__(self, backend: InferenceBackend, view: NodeView) -> None:
        self.backend = backend
        self.view = view
        self.perf = PerfTracker()
        self.in_flight = 0


def _advertised(models: Iterable[str | ModelInfo | AdvertisedModel], backend_name: str) -> tuple[AdvertisedModel, ...]:
    out: list[AdvertisedModel] = []
    for m in models:
        if isinstance(m, AdvertisedModel):
            out.append(m)
        elif isinstance(m, str):
            out.append(AdvertisedModel(name=m, backend=backend_name))
        else:
            out.append(
                AdvertisedModel(
                    name=m.id, aliases=m.aliases, context_length=m.context_length, digest=m.digest, backend=backend_name
                )
            )
    return tuple(out)


class LocalNetwork:
    """A :class:`~tooti.network.Network` over in-process backends, keyed by made-up peer ids.

    ``nodes()`` reports each node's in-flight count and measured TTFT / tokens-per-second like a
    heartbeat would, with ``age_s`` 0.
    """

    def __init__(self, peer_id: str = "local-gateway") -> None:
        self._peer_id = peer_id
        self._nodes: dict[str, _LocalNode] = {}

    @property
    def peer_id(self) -> str:
        """This network's own (gateway) peer id."""
        return self._peer_id

    def add_node(
        self,
        peer_id: str,
        backend: InferenceBackend,
        models: Iterable[str | ModelInfo | AdvertisedModel],
        **view: Any,
    ) -> NodeView:
        """Add (or replace) a node serving ``models``; extra ``NodeView`` fields go in ``view``."""
        node_view = NodeView(peer_id=peer_id, models=_advertised(models, backend.name), **view)
        self._nodes[peer_id] = _LocalNode(backend, node_view)
        return node_view

    async def add_backend(self, peer_id: str, backend: InferenceBackend, **view: Any) -> NodeView:
        """Add a node advertising every model ``backend.list_models()`` reports."""
        return self.add_node(peer_id, backend, await backend.list_models(), **view)

    def update_node(self, peer_id: str, **changes: Any) -> NodeView:
        """Change fields of a node's view (e.g. ``queued`` or ``models``), as a new heartbeat would."""
        node = self._nodes[peer_id]
        node.view = msgspec.structs.replace(node.view, **changes)
        return node.view

    def remove_node(self, peer_id: str) -> None:
        """Forget a node, as if it died: it leaves ``nodes()`` and requests to it fail as unavailable."""
        self._nodes.pop(peer_id, None)

    def nodes(self) -> list[NodeView]:
        """Live nodes, with their current in-flight counts and measured performance."""
        return [
            msgspec.structs.replace(
                n.view,
                in_flight=n.view.in_flight + n.in_flight,
                ttft_ms=n.perf.ttft_ms if n.perf.ttft_ms is not None else n.view.ttft_ms,
                tokens_per_s=n.perf.tokens_per_s if n.perf.tokens_per_s is not None else n.view.tokens_per_s,
            )
            for n in self._nodes.values()
        ]

    async def infer(self, peer_id: str, request: InferRequest) -> AsyncIterator[ResponseFrame]:
        """Run ``request`` on the node's backend; see :meth:`tooti.network.Network.infer`."""
        node = self._nodes.get(peer_id)
        if node is None:
            raise BackendUnavailable(f"peer {peer_id} is not reachable")
        node.in_flight += 1
        try:
            async with closing_iter(handle_request(node.backend, request, perf=node.perf)) as frames:
                async for frame in frames:
                    yield frame
                    if isinstance(frame, Done | ErrorFrame):
                        return
        finally:
            node.in_flight -= 1
        raise StreamEnded(f"stream from {peer_id} ended without done")
