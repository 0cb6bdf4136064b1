"""Whether the node's model server can serve right now, from periodic probes and real requests' outcomes.

A node that keeps announcing a model its dead server cannot answer draws traffic it can only fail
(before this existed: thousands of 503s per minute while ``/ready`` said 200). :class:`BackendWatch`
probes the server every heartbeat interval and at once when a request finds the server unreachable
(:class:`WatchedBackend` reports that); the node announces no models while the server is unhealthy
and announces them again, re-read from the server, once it answers. :func:`scrub_addresses` keeps the
node's internal addresses (``127.0.0.1:8081``, the server's URL) out of what peers and users see.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any, ClassVar

import trio

from tooti._aio import closing_iter
from tooti.backends.endpoints import create_response, stream_completion, stream_response
from tooti.errors import BackendError, BackendTimeout, BackendUnavailable
from tooti.node.announce import advertised_models

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    import msgspec

    from tooti.backends.protocol import (
        BackendHealth,
        BackendSettings,
        Endpoint,
        InferenceBackend,
        JSONObject,
        LoadSnapshot,
        ModelInfo,
    )
    from tooti.config.model import ModelsSection
    from tooti.network import AdvertisedModel

__all__ = ["BackendWatch", "WatchedBackend", "scrub_addresses"]

log = logging.getLogger(__name__)

PROBE_TIMEOUT = 5.0
"""A health probe (and the model list after it) that takes longer counts as a failure."""

_ADDRESS_PATTERNS = (
    re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE),  # URLs
    re.compile(r"\(\s*'[^']*'\s*,\s*\d+\s*\)"),  # Python socket tuples: ('127.0.0.1', 8081)
    re.compile(r"\[[0-9a-f:.]+\](?::\d+)?", re.IGNORECASE),  # [::1]:8081
    re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"),  # 127.0.0.1:8081
    re.compile(r"\blocalhost(?::\d+)?\b", re.IGNORECASE),
)


def scrub_addresses(text: str) -> str:
    """``text`` with URLs, IP addresses, ports and socket tuples replaced by ``<internal>``."""
    for pattern in _ADDRESS_PATTERNS:
        text = pattern.sub("<internal>", text)
    return text


def _scrub(exc: BackendError) -> None:
    exc.message = scrub_addresses(exc.message)
    exc.args = (exc.message,)


class BackendWatch:
    """The model server's current health and the models to announce while it is healthy.

    Args:
        backend: the (started) backend to probe.
        models: the ``models`` config section (which models to announce, prices).
        interval: seconds between probes (the node uses its heartbeat interval).
        initial: the models found at start (the node starts only with a healthy server).
    """

    def __init__(
        self,
        backend: InferenceBackend,
        models: ModelsSection,
        interval: float,
        initial: list[AdvertisedModel],
    ) -> None:
        self.backend = backend
        self.section = models
        self.interval = interval
        self.healthy = True
        self.detail = "ok"
        self.models = initial
        self.checks = 0
        self._wake = trio.Event()

    @property
    def announced(self) -> list[AdvertisedModel]:
        """The models to put in the heartbeat: none while the server is unhealthy."""
        return self.models if self.healthy else []

    def suspect(self) -> None:
        """A request found the server unreachable: probe now instead of at the next interval."""
        self._wake.set()

    async def check(self) -> bool:
        """Probe the server (bounded); return whether its health changed."""
        self.checks += 1
        ok, detail, models = False, "health probe timed out", self.models
        with trio.move_on_after(PROBE_TIMEOUT):
            health: BackendHealth = await self.backend.health()
            ok, detail = health.ok, scrub_addresses(health.detail or ("ok" if health.ok else "unhealthy"))
            if ok and not self.healthy:
                try:
                    served = await self.backend.list_models()
                except BackendError as exc:
                    ok, detail = False, f"model list failed: {scrub_addresses(exc.message)}"
                else:
                    models = advertised_models(served, self.section, self.backend.name)
        changed = ok != self.healthy
        self.detail = detail
        if changed:
            self.healthy = ok
            if ok:
                self.models = models
                log.warning("model server is healthy again; announcing %d model(s)", len(models))
            else:
                log.warning("model server is unhealthy (%s); announcing no models until it recovers", detail)
        return changed

    async def run(self, on_change: Callable[[], None]) -> None:
        """Probe every interval, or at once after :meth:`suspect`; call ``on_change`` when health flips."""
        while True:
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()
            if await self.check():
                on_change()


class WatchedBackend:
    """The node's view of its backend: every call delegated; failures reported and scrubbed.

    A request that finds the server unreachable or silent makes the :class:`BackendWatch` probe at
    once. Every :class:`~tooti.errors.BackendError` leaving here has internal addresses removed from
    its message, since that message becomes the error frame a gateway (and maybe a user) reads.
    """

    _SUSPICIOUS: ClassVar[tuple[type[BackendError], ...]] = (BackendUnavailable, BackendTimeout)

    def __init__(self, backend: InferenceBackend, watch: BackendWatch | None = None) -> None:
        self.inner = backend
        self.watch = watch
        self.name = backend.name
        self.config_type = backend.config_type

    @classmethod
    def from_config(cls, settings: BackendSettings, config: msgspec.Struct) -> WatchedBackend:
        """Not used: a watched backend wraps one already built."""
        raise NotImplementedError

    def _failed(self, exc: BackendError) -> None:
        if self.watch is not None and isinstance(exc, self._SUSPICIOUS):
            self.watch.suspect()
        _scrub(exc)

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.inner, method)(*args)
        except BackendError as exc:
            self._failed(exc)
            raise

    async def start(self) -> None:
        """Delegated."""
        await self.inner.start()

    async def health(self) -> BackendHealth:
        """Delegated."""
        result: BackendHealth = await self._call("health")
        return result

    async def list_models(self) -> list[ModelInfo]:
        """Delegated."""
        result: list[ModelInfo] = await self._call("list_models")
        return result

    async def load(self) -> LoadSnapshot:
        """Delegated."""
        result: LoadSnapshot = await self._call("load")
        return result

    async def chat(self, body: JSONObject) -> JSONObject:
        """Delegated."""
        result: JSONObject = await self._call("chat", body)
        return result

    def chat_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """Delegated; closing this iterator closes the backend's (which stops generation)."""
        return self._watched(self.inner.chat_stream(body))

    async def _watched(self, stream: AsyncIterator[JSONObject]) -> AsyncIterator[JSONObject]:
        try:
            async with closing_iter(stream) as chunks:
                async for chunk in chunks:
                    yield chunk
        except BackendError as exc:
            self._failed(exc)
            raise

    # The wrapper serves every endpoint: natively where the inner backend does, otherwise through
    # tooti.backends.endpoints (Responses translated to chat, a completion stream in one piece).
    native_endpoints: ClassVar[frozenset[Endpoint]] = frozenset({"chat", "completion", "embeddings", "responses"})

    def completion_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """Delegated (token by token when the backend streams completions)."""
        return self._watched(stream_completion(self.inner, body))

    async def responses(self, body: JSONObject) -> JSONObject:
        """Delegated, or translated to chat when the backend has no Responses API."""
        try:
            return await create_response(self.inner, body)
        except BackendError as exc:
            self._failed(exc)
            raise

    def responses_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """Delegated, or translated from a chat stream when the backend has no Responses API."""
        return self._watched(stream_response(self.inner, body))

    async def completion(self, body: JSONObject) -> JSONObject:
        """Delegated."""
        result: JSONObject = await self._call("completion", body)
        return result

    async def embeddings(self, body: JSONObject) -> JSONObject:
        """Delegated."""
        result: JSONObject = await self._call("embeddings", body)
        return result

    async def aclose(self) -> None:
        """Delegated."""
        await self.inner.aclose()
