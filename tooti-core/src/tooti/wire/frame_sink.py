"""Where a node's answer goes, batch by batch: the one contract between a node attempt and its reader.

A node attempt (:class:`tooti.gateway.attempt.NodeAttempt`) reads the node's frames, checks them
and hands them on; what reads them is a :class:`FrameSink`: the client's view of the answer
(Server-Sent Events or one JSON object, :mod:`tooti.gateway.relay`) for user traffic, or a canary's
record (:mod:`tooti.trust.prober`) for the gateway's own checks. Both go through the same attempt,
so a node cannot tell them apart by how its answer is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tooti.errors import BackendError
    from tooti.wire.infer import ResponseFrame

__all__ = ["FrameSink"]


class FrameSink(Protocol):
    """Takes the frames of one answer; the attempt calls :meth:`take` until it returns ``True``."""

    async def take(self, frames: list[ResponseFrame]) -> bool:
        """Use ``frames`` (already checked); ``True`` once the answer is complete (``Done`` was among them).

        Raises:
            BackendError: the frames do not make the answer asked for (e.g. a chunk where one whole
                answer was expected); the attempt treats it as the node's failure.
        """
        ...

    async def broken(self, error: BackendError) -> None:
        """The answer failed after :meth:`take` had been called: end what was started (an error event)."""
        ...
