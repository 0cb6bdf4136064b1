"""One client request from admission to settlement, owned by one object: :class:`Exchange`.

The inference routes hand their request to an :class:`Exchange` and return it; Litestar then runs it
as the response (an ASGI callable), so one call of one object does, in order:

1. **Admission**: read and check the body (:mod:`tooti.gateway.body`) and the routing preferences
   (:mod:`tooti.gateway.prefs`), then the key's models, rate slot and budget reservation
   (:meth:`tooti.gateway.metering.Metering.admit`). A refusal here is the client's answer (400,
   403, 429); nothing was reserved, so nothing is settled.
2. **Routing** (:meth:`tooti.gateway.service.Gateway.route`) and the **failover loop**: the request
   goes to the best node, and to the next one until a node starts answering (see below).
3. **The answer**: each try is a :class:`~tooti.gateway.attempt.NodeAttempt`, which hands the node's
   frames to the client's view (:mod:`tooti.gateway.relay`): Server-Sent Events or one JSON object.
   The whole exchange runs under one :class:`~tooti.gateway.disconnect.DisconnectWatch`: a client
   that leaves cancels it, and gets the 499 nobody receives.
4. **Settlement**, exactly once for every admitted request, however it ended (``ok``, ``failed``,
   ``cancelled``, refused by routing before any node): the one
   :class:`~tooti.gateway.request_hooks.Completion` of the request is built here and handed to the
   completion callbacks (usage row, budget settlement and receipt in
   :mod:`tooti.gateway.metering`; reputation evidence in :mod:`tooti.trust.gateway_trust`).

Failover: before the first token nothing has reached the client, so a failure that another node may
not have (``BackendError.retryable``: transport, timeout, 5xx, malformed answer, ``overloaded``, a
missing model) moves the request to the next candidate, up to ``routing.max_attempts`` with a short
backoff. A client's mistake (``bad_request``: bad parameters, context too long, an endpoint the
server lacks) goes straight back to the client as a 400. Nodes at capacity are not failing: when
every node tried answered ``overloaded``, the request tries them again with growing pauses (50 ms up
to 250 ms) for up to ``routing.overload_wait_sec`` before the client gets 429. Whether the failing
node is charged (recent failures, cooldown) is the attempt's business; the classification is the
failure table in docs/gateway.md. Once the first token is in hand failover is no longer possible.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio

from tooti.errors import BackendError, BackendOverloaded
from tooti.gateway.api_errors import ApiError
from tooti.gateway.attempt import NodeAttempt
from tooti.gateway.body import parse_body
from tooti.gateway.context import request_context
from tooti.gateway.disconnect import ClientDisconnected, DisconnectWatch
from tooti.gateway.metering import KEY_STATE
from tooti.gateway.prefs import preferences_for
from tooti.gateway.relay import client_view
from tooti.gateway.request_hooks import Completion
from tooti.gateway.state import gateway_of
from tooti.wire.request_body import upstream_request

if TYPE_CHECKING:
    from litestar import Request
    from litestar.types import Receive, Scope, Send

    from tooti.gateway.context import RequestContext
    from tooti.gateway.metering import Metering
    from tooti.gateway.relay import StreamedAnswer, WholeAnswer
    from tooti.gateway.request_hooks import CompletionStatus
    from tooti.gateway.service import Gateway
    from tooti.routing.protocol import Decision, Preferences
    from tooti.wire.infer import InferRequest, RequestKind
    from tooti.wire.request_body import ParsedBody

__all__ = ["CLIENT_CLOSED_REQUEST", "Exchange"]

content_log = logging.getLogger("tooti.gateway.content")

CLIENT_CLOSED_REQUEST = 499
"""Status recorded for a request whose client left before its answer (nobody receives it)."""
_BACKOFF_S = 0.05
_OVERLOAD_PAUSE_MAX_S = 0.25
_NOT_ROUTED = "NotRouted"
"""The completion's error for a request refused before any node was tried."""


def _overload_pause(round_: int) -> float:
    """The pause before trying nodes that were all at capacity again: 50, 100, 200, then 250 ms."""
    return min(_BACKOFF_S * (1 << (round_ - 1)), _OVERLOAD_PAUSE_MAX_S)


class Exchange:
    """One client request of ``kind`` on an inference route: returned by the route, run as its response.

    Args:
        request: the client's HTTP request (its body is read here).
        kind: the endpoint's request kind.
    """

    __slots__ = (
        "_error",
        "_node_fault",
        "_status",
        "attempt",
        "ctx",
        "failovers",
        "gw",
        "http",
        "kind",
        "metering",
        "parsed",
        "routed_at",
        "view",
    )

    def __init__(self, request: Request[Any, Any, Any], kind: RequestKind) -> None:
        self.http = request
        self.kind = kind
        self.gw: Gateway = gateway_of(request)
        self.metering: Metering | None = request.app.state.get("metering")
        self.ctx: RequestContext = request_context(request.scope)
        self.parsed: ParsedBody | None = None
        self.attempt: NodeAttempt | None = None
        """The last node attempt (the answering one once it committed)."""
        self.view: StreamedAnswer | WholeAnswer | None = None
        self.routed_at: float | None = None
        self.failovers = 0
        self._status: CompletionStatus = "cancelled"
        self._error: str | None = None
        self._node_fault = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Admit, route, answer and settle the request; every exit after admission settles it once."""
        parsed, prefs = await self._admit()
        try:
            with DisconnectWatch(receive):
                await self._answer(parsed, prefs, send)
            self._status = "ok"
        except ClientDisconnected:
            self._ended("cancelled", "ClientDisconnected")
            if self.view is None or not self.view.started:
                headers = [(b"content-length", b"0")]
                await send({"type": "http.response.start", "status": CLIENT_CLOSED_REQUEST, "headers": headers})
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except BackendError as exc:
            self._ended("failed", type(exc).__name__, node_fault=exc.node_fault)
            if self.view is None or not self.view.started:
                raise  # rendered as the client's error status; a started stream ended with an error event
        except asyncio.CancelledError:
            self._ended("cancelled", "CancelledError")
            raise
        except BaseException as exc:
            if self._error is None:  # a refusal before any node (routing) named itself already
                self._ended("failed", type(exc).__name__)
            raise
        finally:
            self._settle()

    async def _admit(self) -> tuple[ParsedBody, Preferences]:
        """Read and check the request, then take the key's rate slot and budget (raises the refusal)."""
        http, ctx = self.http, self.ctx
        raw = await http.body()
        self.parsed = parsed = parse_body(raw, self.kind)
        ctx.model = parsed.model
        prefs = preferences_for(parsed.model, parsed.preferences, http.headers)
        if self.metering is not None:
            key = http.scope.get("state", {}).get(KEY_STATE)
            await self.metering.admit(key, parsed, len(raw), ctx)
        if self.gw.config.gateway.log_content:
            content_log.info("%s request body: %s", ctx.request_id, parsed.body)
        return parsed, prefs

    async def _answer(self, parsed: ParsedBody, prefs: Preferences, send: Send) -> None:
        """Route the request and fail over until a node's answer reached the client."""
        gw, ctx = self.gw, self.ctx
        try:
            prefs = gw.for_request(prefs, parsed.kind, parsed.body)  # context need, prefix keys (affinity)
            decision = await gw.route(prefs)
        except ApiError:
            self._ended("failed", _NOT_ROUTED)
            raise
        ctx.reasons = (f"strategy={decision.strategy}", *decision.reasons)
        total = gw.config.timeouts.total_request_sec
        self.routed_at = time.perf_counter()
        request = upstream_request(
            parsed,
            request_id=ctx.request_id,
            deadline_ms=int((time.time() + total) * 1000),
            want_receipt=gw.hooks.want_receipts,
        )
        self.view = view = client_view(
            parsed, send, ctx.request_id, gw.metrics, log_content=gw.config.gateway.log_content
        )
        await self._fail_over(decision, prefs, request, view, self.routed_at)

    async def _fail_over(
        self,
        decision: Decision,
        prefs: Preferences,
        request: InferRequest,
        view: StreamedAnswer | WholeAnswer,
        routed_at: float,
    ) -> None:
        """Try the candidates in order (and again while all are at capacity) until one answers.

        Raises:
            BackendError: the last attempt's error when every attempt failed, a client error, or a
                failure after the answer started.
            ApiError: 504 when the total budget ran out before any node answered.
        """
        gw = self.gw
        routing, total = gw.config.routing, gw.config.timeouts.total_request_sec
        deadline = routed_at + total
        wait_until = routed_at + min(routing.overload_wait_sec, total)
        last: BackendError | None = None
        candidates = decision.ordered[: routing.max_attempts]
        for round_ in itertools.count():
            all_full = True  # every node of this round answered overloaded
            for number, candidate in enumerate(candidates):
                if number or round_:
                    self.failovers += 1
                    gw.metrics.failovers.labels(model=request.model, reason=type(last).__name__).inc()
                    pause = _BACKOFF_S * number if number else _overload_pause(round_)
                    await anyio.sleep(min(pause, max(deadline - time.perf_counter(), 0.0)))
                if deadline - time.perf_counter() <= 0:
                    break
                peer = candidate.peer_id
                self.attempt = attempt = NodeAttempt(
                    gw, peer, request, deadline, self.ctx, gw.hooks.checks_for(request, peer)
                )
                try:
                    await attempt.answer(view)
                except BackendError as exc:
                    if attempt.committed or not exc.retryable:
                        raise
                    last = exc
                    all_full = all_full and isinstance(exc, BackendOverloaded)
                    continue
                finally:
                    if attempt.committed:  # the node that served this prompt prefix keeps it (affinity)
                        gw.affinity.remember(prefs.prefix_keys, peer)
                return
            # Nodes at capacity are not failing: wait for room (bounded) rather than answer 429.
            if not (all_full and isinstance(last, BackendOverloaded)) or time.perf_counter() >= wait_until:
                break
        if last is None:
            self._ended("failed", "TimeoutError", node_fault=True)  # the node took the whole time budget
            raise ApiError(504, "the request ran out of time before a node answered", code="timeout")
        raise last

    def _ended(self, status: CompletionStatus, error: str, *, node_fault: bool = False) -> None:
        self._status, self._error, self._node_fault = status, error, node_fault

    def _settle(self) -> None:
        """Build the request's one :class:`Completion` and hand it to the completion callbacks."""
        hooks = self.gw.hooks
        parsed = self.parsed
        if not hooks.on_complete or parsed is None:
            return
        attempt = self.attempt
        answering = attempt if attempt is not None and attempt.committed else None
        routed_at = self.routed_at
        hooks.completed(
            Completion(
                request_id=self.ctx.request_id,
                model=parsed.model,
                peer_id=None if attempt is None else attempt.peer_id,
                usage=None if answering is None else answering.usage,
                ttft_s=None if answering is None else answering.ttft_s,
                duration_s=0.0 if routed_at is None else time.perf_counter() - routed_at,
                status=self._status,
                failovers=self.failovers,
                error=None if self._status == "ok" else self._error,
                node_fault=self._node_fault,
            )
        )
