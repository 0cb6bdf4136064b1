"""The gateway's view of the network: the contract between ``tooti.p2p`` and ``tooti.gateway``.

The gateway never touches libp2p or trio. It reads a registry snapshot with :meth:`Network.nodes`
(synchronous, no I/O: the p2p runtime keeps it current from heartbeats) and sends requests with
:meth:`Network.infer`, an async iterator of response frames over one libp2p stream. Extras beyond
these (route table, DHT lookups, heartbeat counts) are declared explicitly, not looked up by name:
see :mod:`tooti.network_capabilities`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Protocol, runtime_checkable

import msgspec

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["MAX_ALIASES", "MAX_PRICE_PER_1K", "AdvertisedModel", "ModelName", "Network", "NodeView"]

MAX_ALIASES = 16
"""Aliases one announced model may carry."""
MAX_PRICE_PER_1K = 1000.0
"""Highest price per 1K tokens a node may announce; anything above is absurd and the heartbeat is refused."""

# Bounds a peer's announcement must respect, checked by msgspec (C code) while the heartbeat is decoded.
# Names use a safe character set (no markup, quotes, spaces or control characters) because they end
# up in HTML dashboards, metric labels and logs; `\Z` (not `$`) so a trailing newline is refused too.
ModelName = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}\Z")]
"""A model name or alias: ``smollm2``, ``llama3.2:1b``, ``HuggingFaceTB/SmolLM2-135M-Instruct``."""
_Label = Annotated[str, msgspec.Meta(pattern=r"\A([A-Za-z0-9][A-Za-z0-9._-]{0,63})?\Z")]
_Digest = Annotated[str, msgspec.Meta(pattern=r"\A[A-Za-z0-9:._-]{1,160}\Z")]
_Price = Annotated[float, msgspec.Meta(ge=0.0, le=MAX_PRICE_PER_1K)]
_Context = Annotated[int, msgspec.Meta(ge=1, le=100_000_000)]


class AdvertisedModel(msgspec.Struct, kw_only=True, frozen=True):
    """A model as a node announces it. Decoding enforces the bounds; constructing in code does not."""

    name: ModelName
    aliases: Annotated[tuple[ModelName, ...], msgspec.Meta(max_length=MAX_ALIASES)] = ()
    context_length: _Context | None = None
    digest: _Digest | None = None
    backend: _Label = ""
    price_in_per_1k: _Price | None = None
    price_out_per_1k: _Price | None = None


class NodeView(msgspec.Struct, kw_only=True, frozen=True):
    """One live node in the registry, as of its last heartbeat."""

    peer_id: str
    name: str = ""
    models: tuple[AdvertisedModel, ...] = ()
    in_flight: int = 0
    queued: int = 0
    capacity: int | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    region: str | None = None
    version: str = ""
    hardware: str = ""
    age_s: float = 0.0
    """Seconds since the last heartbeat, on the receiver's clock."""
    addrs: tuple[str, ...] = ()
    certificate: str | None = None
    """The membership certificate the node announced, unverified (admission verifies it)."""

    def serves(self) -> frozenset[str]:
        """Every model name and alias this node answers to."""
        names: set[str] = set()
        for m in self.models:
            names.add(m.name)
            names.update(m.aliases)
        return frozenset(names)


@runtime_checkable
class Network(Protocol):
    """What the gateway needs from the p2p layer (asyncio side)."""

    @property
    def peer_id(self) -> str:
        """This process's own peer id."""
        ...

    def nodes(self) -> list[NodeView]:
        """Live nodes (stale ones already pruned), sorted by peer id. No I/O; O(n), for tables and lists.

        A network with many nodes also declares a route table among its optional extras
        (:class:`tooti.network_capabilities.NetworkCapabilities`): routing data prepared as heartbeats
        arrive, which the gateway routes from in constant time. Without it the gateway mirrors
        ``nodes()`` per decision.
        """
        ...

    def infer(self, peer_id: str, request: InferRequest) -> AsyncIterator[ResponseFrame]:
        """Send ``request`` to ``peer_id`` and yield its response frames until Done or an error frame.

        Raises :class:`tooti.errors.BackendUnavailable` when the peer cannot be reached and
        :class:`tooti.errors.MalformedResponse` when the stream ends without Done. Closing the
        iterator early resets the stream, which cancels the node's backend request.
        """
        ...
