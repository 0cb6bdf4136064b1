"""Is a model the registry does not know served on the network at all? Ask the DHT, sparingly.

Right after a gateway starts, its registry is empty until heartbeats arrive (up to one interval),
and a model whose nodes all went silent leaves it for good. Answering 404 ``model_not_found`` then
tells a client the model does not exist, when it only has no capacity right now. Nodes announce a
DHT provider record per model, so before a 404 the gateway looks the name up once: providers mean
503 ``no_capacity`` with ``Retry-After``.

The lookup happens only on that path (a request the registry cannot route at all), never for a
routable request. It is bounded: :data:`LOOKUP_TIMEOUT_S` per lookup, :data:`MAX_CONCURRENT`
lookups at once (a client sending random model names waits for a slot or gets the 404), and each
answer is remembered (:data:`REMEMBER_S` for a found model, :data:`NEGATIVE_S` for a missing one,
at most :data:`MAX_REMEMBERED` names) so a name costs at most one lookup per window.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import anyio

from tooti.network_capabilities import capabilities_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["LOOKUP_TIMEOUT_S", "ProviderLookup"]

log = logging.getLogger(__name__)

LOOKUP_TIMEOUT_S = 2.0
MAX_CONCURRENT = 4
REMEMBER_S = 600.0
NEGATIVE_S = 30.0
MAX_REMEMBERED = 4096


class ProviderLookup:
    """Remembered DHT answers to "does anyone provide this model?".

    Args:
        find_providers: the network's ``find_providers(model) -> list[peer id]`` coroutine function,
            or ``None`` when the network has no DHT (every answer is then "unknown").
        clock: monotonic clock, injectable for tests.
    """

    def __init__(
        self,
        find_providers: Callable[[str], Awaitable[list[str]]] | None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._find = find_providers
        self._clock = clock
        self._answers: dict[str, tuple[bool, float]] = {}  # model -> (provided, until)
        self._limiter: anyio.CapacityLimiter | None = None
        self.lookups = 0

    @classmethod
    def for_network(cls, network: object) -> ProviderLookup:
        """A lookup over the network's DHT provider lookup when it declares one."""
        return cls(capabilities_of(network).find_providers)

    def remembered(self, model: str) -> bool | None:
        """The remembered answer for ``model``, or ``None`` when there is none (or it expired)."""
        answer = self._answers.get(model)
        if answer is None or self._clock() >= answer[1]:
            return None
        return answer[0]

    async def provided(self, model: str) -> bool:
        """Whether some node announced ``model`` in the DHT (remembered; bounded in time and count)."""
        known = self.remembered(model)
        if known is not None or self._find is None:
            return bool(known)
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(MAX_CONCURRENT)
        found = False
        with anyio.move_on_after(LOOKUP_TIMEOUT_S):
            async with self._limiter:
                self.lookups += 1
                try:
                    found = bool(await self._find(model))
                except Exception as exc:  # noqa: BLE001 - a failed lookup only means "not found"
                    log.debug("DHT lookup for model %r failed: %s", model, exc)
        self._remember(model, found)
        return found

    def _remember(self, model: str, provided: bool) -> None:
        if len(self._answers) >= MAX_REMEMBERED:
            now = self._clock()
            for name in [n for n, (_, until) in self._answers.items() if until <= now]:
                del self._answers[name]
            if len(self._answers) >= MAX_REMEMBERED:
                self._answers.pop(next(iter(self._answers)))  # the oldest entry
        self._answers[model] = (provided, self._clock() + (REMEMBER_S if provided else NEGATIVE_S))
