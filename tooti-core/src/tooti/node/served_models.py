"""A node answers only for the models it announces.

Without this gate a request for ``gpt-4-turbo`` reached the backend with that name and a llama.cpp
server (which serves whatever it loaded, whatever the name) answered it with SmolLM2: the client,
or a gateway routing by name, got another model's text under the name it asked for (issue #10). The
check runs before the backend is called and reads the models the node announces right now (the
health watch empties that list while the model server is down).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.errors import BackendUnavailable, ModelNotFound
from tooti.wire.error_codes import error_to_frame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from tooti.network import AdvertisedModel
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["refuse_unserved"]


class _Names:
    """Served names (models and aliases), recomputed only when the announced list object changes."""

    def __init__(self) -> None:
        self._of: object = None
        self._names: frozenset[str] = frozenset()

    def of(self, models: Sequence[AdvertisedModel]) -> frozenset[str]:
        if models is not self._of:
            self._names = frozenset(n for m in models for n in (m.name, *m.aliases))
            self._of = models
        return self._names


def refuse_unserved(
    handler: Callable[[InferRequest], AsyncIterator[ResponseFrame]],
    announced: Callable[[], Sequence[AdvertisedModel]],
) -> Callable[[InferRequest], AsyncIterator[ResponseFrame]]:
    """Wrap a request handler so that a request for a model the node does not announce is refused.

    Args:
        handler: the node's request handler.
        announced: the models the node announces now.

    Returns:
        A handler answering ``model_not_found`` (or ``unavailable`` while nothing is announced, i.e.
        the model server is down) without calling ``handler``.
    """
    names = _Names()

    def gated(request: InferRequest) -> AsyncIterator[ResponseFrame]:
        models = announced()
        if not models:
            return _refuse(BackendUnavailable("the node's model server is not available"))
        if request.model not in names.of(models):
            return _refuse(ModelNotFound(f"model {request.model[:128]!r} is not served by this node"))
        return handler(request)

    return gated


async def _refuse(error: BackendUnavailable | ModelNotFound) -> AsyncIterator[ResponseFrame]:
    yield error_to_frame(error)
