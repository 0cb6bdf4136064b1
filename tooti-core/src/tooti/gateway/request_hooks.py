"""Where later work plugs into the request path: a per-attempt frame check and a per-request completion.

Both are plain callables held by :class:`RequestHooks` on the gateway (``gw.hooks``), called
synchronously on the event loop, so they must be cheap and must not block (a store that does I/O
hands the record to a thread or a queue).

- **Frame checks** (response validation): for every attempt, each factory in ``frame_checks`` is
  called with the request and the peer id and may return a checker; every frame the node sends on
  that attempt passes through the checker before the gateway uses it. A checker rejects a frame by
  raising :class:`~tooti.errors.MalformedResponse`, which the attempt treats like any malformed
  answer from the node (failover before the first token, cooldown, an error event after it).
- **Completion callbacks** (accounting, receipts, reputation): each callback in ``on_complete`` gets
  one :class:`Completion` per admitted client request, once, however it ended: answered, failed on
  every node or mid-answer, refused by routing before any node, or abandoned by the client. The
  completion is built in one place, when the request's exchange settles
  (:mod:`tooti.gateway.exchange`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from tooti.wire.infer import InferRequest, ResponseFrame, UsageFrame

__all__ = ["Completion", "CompletionCallback", "CompletionStatus", "FrameCheck", "FrameCheckFactory", "RequestHooks"]

log = logging.getLogger(__name__)

CompletionStatus = Literal["ok", "failed", "cancelled"]
"""``ok``: the answer reached the client whole; ``failed``: it ended with an error (before or after
the first token, or no node could be routed to); ``cancelled``: the client went away first (499)."""

FrameCheck: TypeAlias = Callable[[ResponseFrame], None]
"""Raises :class:`~tooti.errors.MalformedResponse` for a frame the gateway must not use."""
FrameCheckFactory: TypeAlias = Callable[[InferRequest, str], FrameCheck | None]
"""Called per attempt with the request and the peer id; ``None`` when it has nothing to check."""
CompletionCallback: TypeAlias = Callable[["Completion"], None]


@dataclass(frozen=True, slots=True)
class Completion:
    """How one client request ended."""

    request_id: str
    model: str
    peer_id: str | None
    """The node that answered (or the last one tried); ``None`` when no node was tried."""
    usage: UsageFrame | None
    """Token counts the node reported, when it did."""
    ttft_s: float | None
    """Seconds from sending the request to the node until its first token (``None``: none came)."""
    duration_s: float
    """Seconds from routing the request until it ended."""
    status: CompletionStatus
    failovers: int
    """Nodes tried before the one that answered (or before giving up)."""
    error: str | None = None
    """Why it did not end ``ok``: the error class name, ``NotRouted`` (refused before any node),
    ``TimeoutError`` (the budget ran out before a node answered) or ``ClientDisconnected``."""
    node_fault: bool = False
    """Whether that error is the node's own (:attr:`tooti.errors.BackendError.node_fault`): a client's
    mistake, a missing model or a busy node says nothing against it."""


@dataclass(slots=True)
class RequestHooks:
    """The seams of the request path; empty lists cost nothing."""

    frame_checks: list[FrameCheckFactory] = field(default_factory=list)
    on_complete: list[CompletionCallback] = field(default_factory=list)
    want_receipts: bool = False
    """Ask nodes for a signed usage receipt before ``Done`` (set by accounting, which checks them)."""

    def checks_for(self, request: InferRequest, peer_id: str) -> list[FrameCheck]:
        """The frame checkers of one attempt."""
        checks: list[FrameCheck] = []
        for factory in self.frame_checks:
            check = factory(request, peer_id)
            if check is not None:
                checks.append(check)
        return checks

    def completed(self, completion: Completion) -> None:
        """Hand ``completion`` to every callback; a failing callback is logged, never raised."""
        for callback in self.on_complete:
            try:
                callback(completion)
            except Exception as exc:
                log.warning("completion callback %r failed: %s", callback, type(exc).__name__, exc_info=exc)
