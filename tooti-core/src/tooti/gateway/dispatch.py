"""The failover loop: send a request to the best node, and to the next one until a node starts answering.

Before the first token nothing has reached the client, so a failure that another node may not have
(``BackendError.retryable``: transport, timeout, 5xx, malformed answer, ``overloaded``, a missing
model) moves the request to the next candidate, up to ``routing.max_attempts`` with a short backoff.
A client's mistake (``bad_request``: bad parameters, context too long, an endpoint the server lacks)
goes straight back to the client as a 400. Nodes at capacity are not failing: when every node tried
answered ``overloaded``, the request tries them again with growing pauses (50 ms up to 250 ms) for
up to ``routing.overload_wait_sec`` before the client gets 429. Whether the failing node is charged (recent failures,
cooldown) is the attempt's business (:class:`~tooti.gateway.attempt.NodeAttempt`); the classification
is the failure table in docs/gateway.md. Once the first token is in hand the caller commits the HTTP
response and failover is no longer possible.
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

import anyio

from tooti.errors import BackendError, BackendOverloaded
from tooti.gateway.api_errors import ApiError
from tooti.gateway.attempt import NodeAttempt
from tooti.gateway.body import upstream_request
from tooti.gateway.request_hooks import Completion, CompletionStatus

if TYPE_CHECKING:
    from tooti.gateway.body import ParsedBody
    from tooti.gateway.context import RequestContext
    from tooti.gateway.service import Gateway
    from tooti.routing.protocol import Preferences

__all__ = ["open_request"]

_BACKOFF_S = 0.05
_OVERLOAD_PAUSE_MAX_S = 0.25


async def open_request(gw: Gateway, parsed: ParsedBody, prefs: Preferences, ctx: RequestContext) -> NodeAttempt:
    """Route ``parsed`` and return the attempt of the first node that starts answering.

    The returned attempt is committed: the caller relays it and it reports the request's completion.

    Raises:
        ApiError: no node may serve the request (404, 503, 400) or the total budget ran out.
        BackendError: the last attempt's error when every attempt failed, or a client error.
    """
    decision = await gw.route(prefs)
    ctx.reasons = (f"strategy={decision.strategy}", *decision.reasons)
    total = gw.config.timeouts.total_request_sec
    routed_at = time.perf_counter()
    deadline = routed_at + total
    request = upstream_request(
        parsed,
        request_id=ctx.request_id,
        deadline_ms=int((time.time() + total) * 1000),
        want_receipt=gw.hooks.want_receipts,
    )
    last: BackendError | None = None
    tried: str | None = None
    failovers = 0
    candidates = decision.ordered[: gw.config.routing.max_attempts]
    wait_until = routed_at + min(gw.config.routing.overload_wait_sec, total)
    try:
        for round_ in itertools.count():
            all_full = True  # every node of this round answered overloaded
            for number, candidate in enumerate(candidates):
                if number or round_:
                    failovers += 1
                    gw.metrics.failovers.labels(model=parsed.model, reason=type(last).__name__).inc()
                    pause = _BACKOFF_S * number if number else _overload_pause(round_)
                    await anyio.sleep(min(pause, max(deadline - time.perf_counter(), 0.0)))
                if deadline - time.perf_counter() <= 0:
                    break
                tried = candidate.peer_id
                attempt = NodeAttempt(gw, tried, request, deadline, ctx, routed_at=routed_at, failovers=failovers)
                try:
                    await attempt.open()
                except BackendError as exc:
                    if not exc.retryable:
                        raise
                    last = exc
                    all_full = all_full and isinstance(exc, BackendOverloaded)
                    continue
                attempt.committed = True
                ctx.node = candidate.peer_id
                return attempt
            # Nodes at capacity are not failing: wait for room (bounded) rather than answer 429.
            if not (all_full and isinstance(last, BackendOverloaded)) or time.perf_counter() >= wait_until:
                break
    except BackendError as exc:
        _report(gw, parsed, ctx, tried, routed_at, failovers, "failed", exc)
        raise
    except BaseException as exc:
        _report(gw, parsed, ctx, tried, routed_at, failovers, "cancelled", exc)
        raise
    _report(gw, parsed, ctx, tried, routed_at, failovers, "failed", last)
    if last is None:
        raise ApiError(504, "the request ran out of time before a node answered", code="timeout")
    raise last


def _overload_pause(round_: int) -> float:
    """The pause before trying nodes that were all at capacity again: 50, 100, 200, then 250 ms."""
    return min(_BACKOFF_S * (1 << (round_ - 1)), _OVERLOAD_PAUSE_MAX_S)


def _report(
    gw: Gateway,
    parsed: ParsedBody,
    ctx: RequestContext,
    peer_id: str | None,
    routed_at: float,
    failovers: int,
    status: CompletionStatus,
    error: BaseException | None,
) -> None:
    """The completion of a request no node answered (a committed attempt reports its own)."""
    if not gw.hooks.on_complete:
        return
    gw.hooks.completed(
        Completion(
            request_id=ctx.request_id,
            model=parsed.model,
            peer_id=peer_id,
            usage=None,
            ttft_s=None,
            duration_s=time.perf_counter() - routed_at,
            status=status,
            failovers=failovers,
            error="TimeoutError" if error is None else type(error).__name__,
            node_fault=getattr(error, "node_fault", True),  # None: the node took the whole time budget
        )
    )
