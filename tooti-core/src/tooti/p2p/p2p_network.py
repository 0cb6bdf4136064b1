"""``P2PNetwork``: the gateway's :class:`tooti.network.Network` over a p2p runtime in a trio thread.

The gateway (asyncio) starts it, reads :meth:`P2PNetwork.nodes` from the registry without I/O, and
streams inference with :meth:`P2PNetwork.infer`; everything libp2p runs in the trio thread.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Self

from tooti.errors import StreamEnded
from tooti.network_capabilities import NetworkCapabilities
from tooti.wire.infer import Done, ErrorFrame

if TYPE_CHECKING:
    from types import TracebackType

    from libp2p.crypto.keys import KeyPair
    from trio_typing import TaskStatus

    from tooti.config.model import Config
    from tooti.network import NodeView
    from tooti.p2p.bridge import BatchedStream, TrioThread
    from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
    from tooti.routing.table import RouteTable
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["NodeFrames", "P2PNetwork", "gateway_settings"]


def gateway_settings(config: Config) -> RuntimeSettings:
    """Runtime settings for a gateway from a config's ``listen``, ``network`` and ``heartbeat`` sections."""
    from tooti.p2p.runtime import settings_from_config

    return settings_from_config(config, gateway=True)


class P2PNetwork:
    """A gateway-mode p2p runtime (listens, hears heartbeats, DHT server, dials bootstrap peers).

    Args:
        settings: where to listen and whom to dial (see :func:`gateway_settings`).
        identity_file: a key file for a stable gateway peer id (needed when nodes restrict
            ``node.allowed_gateway_peers``); created if missing. Default: a fresh identity per start,
            never the node's key (a shared identity would make node and gateway the same peer).
        key_pair: an explicit identity (tests); overrides ``identity_file``.

    Use ``async with P2PNetwork(...) as net:`` or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        settings: RuntimeSettings,
        *,
        identity_file: Path | str | None = None,
        key_pair: KeyPair | None = None,
    ) -> None:
        self.settings = settings
        self._identity_file = Path(identity_file).expanduser() if identity_file else None
        self._key_pair = key_pair
        self._thread: TrioThread[None] | None = None
        self._runtime: P2PRuntime | None = None
        self._addrs: list[str] = []

    @classmethod
    def from_config(cls, config: Config, *, identity_file: Path | str | None = None) -> Self:
        """Build from a config file's sections."""
        from tooti.p2p.runtime import settings_from_config

        known = Path(identity_file).expanduser() if identity_file else None
        return cls(settings_from_config(config, identity_file=known, gateway=True), identity_file=identity_file)

    # -- lifecycle --------------------------------------------------------------------------------

    def _start_blocking(self) -> None:
        from tooti.p2p.bridge import TrioThread
        from tooti.p2p.identity import generate_identity, load_or_create_identity
        from tooti.p2p.runtime import P2PRuntime

        if self._key_pair is None:
            self._key_pair = (
                load_or_create_identity(self._identity_file) if self._identity_file else generate_identity()
            )
        runtime = P2PRuntime(self._key_pair, self.settings)
        thread: TrioThread[None] = TrioThread("tooti-p2p-gateway")

        async def main(*, task_status: TaskStatus[None]) -> None:
            import trio

            async with trio.open_nursery() as nursery:
                await nursery.start(runtime.run)
                self._addrs = runtime.listen_addrs()
                task_status.started()

        thread.start(main)
        self._runtime, self._thread = runtime, thread

    async def start(self) -> None:
        """Start the runtime; returns once the host listens (libp2p is imported here, lazily)."""
        if self._thread is not None:
            return
        await asyncio.to_thread(self._start_blocking)

    async def stop(self) -> None:
        """Stop the runtime and join its thread (closes the host and every connection)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            await asyncio.to_thread(thread.stop)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # -- Network ----------------------------------------------------------------------------------

    def _require(self) -> tuple[TrioThread[None], P2PRuntime]:
        if self._thread is None or self._runtime is None:
            raise RuntimeError("P2PNetwork is not started")
        return self._thread, self._runtime

    @property
    def peer_id(self) -> str:
        """The gateway's own peer id."""
        return self._require()[1].peer_id

    def listen_addrs(self) -> list[str]:
        """Full multiaddrs (``…/p2p/<id>``) nodes can bootstrap from."""
        return list(self._addrs)

    @property
    def capabilities(self) -> NetworkCapabilities:
        """The extras a p2p network offers: route table, DHT lookups, heartbeat counts, hosts, directions."""
        return NetworkCapabilities(
            route_table=self.route_table,
            find_providers=self.find_providers,
            heartbeat_counts=self.heartbeat_counts,
            remote_host=self.remote_host,
            connection_direction=self.connection_direction,
        )

    def nodes(self) -> list[NodeView]:
        """Live nodes from the heartbeat registry; no I/O."""
        return self._require()[1].registry.snapshot()

    def route_table(self) -> RouteTable:
        """The registry's routing data, prepared as heartbeats arrive (what the gateway routes from)."""
        return self._require()[1].registry.table

    def heartbeat_counts(self) -> dict[str, int]:
        """Heartbeats by result (accepted, invalid, rate_limited) and ``peers_banned``; empty before start.

        Read by /metrics.
        """
        if self._runtime is None:
            return {}
        return {**self._runtime.registry.counts(), "peers_banned": self._runtime.bans.total}

    def remote_host(self, peer_id: str) -> str | None:
        """The source IP of the live connection to ``peer_id`` (``None`` when not connected or not started)."""
        return None if self._runtime is None else self._runtime.remote_host(peer_id)

    def connection_direction(self, peer_id: str) -> Literal["inbound", "outbound"] | None:
        """Who opened the live connection to ``peer_id`` (``None`` when not connected or not started).

        ``"outbound"``: this gateway dialled the node; ``"inbound"``: the node dialled the gateway.
        """
        return None if self._runtime is None else self._runtime.connection_direction(peer_id)

    @property
    def dropped_heartbeats(self) -> int:
        """Heartbeats rejected so far (spoofed, malformed, oversized)."""
        return self._require()[1].registry.dropped

    def infer(self, peer_id: str, request: InferRequest) -> NodeFrames:
        """Stream ``request`` to ``peer_id``; see :meth:`tooti.network.Network.infer`."""
        thread, runtime = self._require()
        return NodeFrames(thread.stream(runtime.request, peer_id, request), peer_id)

    async def connect(self, addr: str) -> str:
        """Dial a ``…/p2p/<id>`` multiaddr now; returns the peer id."""
        thread, runtime = self._require()
        return await thread.call(runtime.connect, addr)

    async def find_providers(self, model: str) -> list[str]:
        """Peer ids with a DHT provider record for ``model`` (liveness comes from :meth:`nodes` only)."""
        thread, runtime = self._require()
        return await thread.call(runtime.find_providers, model)


class NodeFrames:
    """The frames of one answer, read from the trio thread in batches; ends at Done or an ErrorFrame.

    ``ready_nowait()`` returns the frames already delivered without waiting, so the gateway handles
    (and writes to its client) everything in hand at once. A stream that ends before Done or an
    error frame raises :class:`~tooti.errors.StreamEnded` (a MalformedResponse): an answer is never silently short.
    """

    __slots__ = ("_finished", "_inner", "peer_id")

    def __init__(self, inner: BatchedStream[ResponseFrame], peer_id: str) -> None:
        self._inner = inner
        self.peer_id = peer_id
        self._finished = False

    def __aiter__(self) -> NodeFrames:
        return self

    async def __anext__(self) -> ResponseFrame:
        if self._finished:
            raise StopAsyncIteration
        try:
            frame = await self._inner.__anext__()
        except StopAsyncIteration:
            self._finished = True
            await self._inner.aclose()
            raise StreamEnded(f"stream from {self.peer_id} ended without done") from None
        except BaseException:
            self._finished = True
            await self._inner.aclose()
            raise
        if isinstance(frame, Done | ErrorFrame):
            self._finished = True
            await self._inner.aclose()
        return frame

    def ready_nowait(self) -> list[ResponseFrame]:
        """Frames already delivered (up to Done or an error frame), without waiting."""
        if self._finished:
            return []
        frames = self._inner.ready_nowait()
        for i, frame in enumerate(frames):
            if isinstance(frame, Done | ErrorFrame):
                self._finished = True
                return frames[: i + 1]
        return frames

    async def aclose(self) -> None:
        """Stop reading (resets the node stream unless the answer already ended)."""
        self._finished = True
        await self._inner.aclose()
