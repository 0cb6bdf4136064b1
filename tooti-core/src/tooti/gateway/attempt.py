"""One request attempt on one node, owned by one object from sending the request to releasing the stream.

:class:`NodeAttempt` is the only code that talks to a node for a request, for user traffic and the
canary prober alike (:func:`canary_sender`): it sends the request, reads frames under the timeouts
(first token, idle gap, total budget; a timeout names the limit that fired), runs the frame checks,
hands the frames to a :class:`~tooti.wire.frame_sink.FrameSink`, records the node's outcome once
(observations, metrics, cooldown) and releases the stream. How the client request ends (the
:class:`~tooti.gateway.request_hooks.Completion`) is the exchange's business
(:mod:`tooti.gateway.exchange`), which may try several attempts.

Until the first substantive frame is in hand nothing reaches the sink and the attempt is not
``committed``: a failure then may move the request to another node. Whether a failure is the node's
fault is decided by the error's type (``BackendError.node_fault``, see the failure table in
docs/gateway.md): only the node's own failures count against it and put it in cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import TYPE_CHECKING

import anyio

from tooti.errors import BackendError, BackendTimeout, BackendUnavailable, MalformedResponse, UpstreamError
from tooti.gateway.context import RequestContext
from tooti.trust.frame_check import FrameCheck, node_error
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, UsageFrame, carries_token, is_responses_preamble

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from tooti.gateway.service import Gateway
    from tooti.trust.prober import CanarySender
    from tooti.wire.frame_sink import FrameSink
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["NodeAttempt", "canary_sender", "is_preamble"]

log = logging.getLogger(__name__)


def is_preamble(frame: ResponseFrame) -> bool:
    """A chunk with nothing a client must see yet: no token, no finish reason, no usage (a role-only delta).

    Committing the HTTP response on such a chunk would forfeit failover for a node that dies before
    its first real token, so the attempt holds these back until something substantive arrives.
    """
    if not isinstance(frame, ChunkFrame) or "usage" in frame.data or carries_token(frame.data):
        return False
    responses_preamble = is_responses_preamble(frame.data)
    if responses_preamble is not None:
        return responses_preamble
    return not any(not isinstance(c, dict) or c.get("finish_reason") for c in frame.data.get("choices") or ())


class NodeAttempt:
    """One request sent to one node.

    Args:
        gw: the gateway (network, observations, metrics, timeouts).
        peer_id: the node.
        request: what is sent.
        deadline: ``time.perf_counter()`` value at which the attempt gives up (the request's
            ``timeouts.total_request_sec``, or a canary's own limit).
        ctx: the client request's bookkeeping (time spent waiting on nodes, the answering node).
        checks: the frame checks every frame passes before anything uses it
            (:meth:`~tooti.gateway.request_hooks.RequestHooks.checks_for`).
        observed: whether the outcome feeds routing and the metrics (TTFT, decode speed, failures,
            cooldown, tokens). User traffic does; a canary, which the prober judges itself, counts
            only as load (in flight) so that the gateway's own checks do not move what routing and
            operators see.
    """

    __slots__ = (
        "_checks",
        "_frames",
        "_observed",
        "_pending_error",
        "_released",
        "committed",
        "ctx",
        "deadline",
        "first_at",
        "gw",
        "last_token_at",
        "peer_id",
        "reported",
        "request",
        "sent_at",
        "usage",
    )

    def __init__(
        self,
        gw: Gateway,
        peer_id: str,
        request: InferRequest,
        deadline: float,
        ctx: RequestContext,
        checks: Sequence[Callable[[ResponseFrame], object]],
        *,
        observed: bool = True,
    ) -> None:
        self.gw = gw
        self.peer_id = peer_id
        self.request = request
        self.deadline = deadline
        self.ctx = ctx
        self.committed = False
        """Set once the first substantive frame is in hand and goes to the sink: no failover after it."""
        self.usage: UsageFrame | None = None
        self.reported: ErrorFrame | None = None
        """The error frame the node sent instead of (the rest of) its answer, if it did."""
        self.sent_at = 0.0
        self.first_at: float | None = None
        self.last_token_at: float | None = None
        """When the last frame carrying a token arrived (the end of the decode phase)."""
        self._frames: AsyncIterator[ResponseFrame] | None = None
        self._pending_error: BackendError | None = None
        self._checks = checks
        self._released = False
        self._observed = observed

    @property
    def ttft_s(self) -> float | None:
        """Seconds from sending the request until its first substantive frame (``None``: none came)."""
        return None if self.first_at is None else self.first_at - self.sent_at

    async def answer(self, sink: FrameSink) -> None:
        """Send the request, hand the node's answer to ``sink`` until it is complete, and release the stream.

        A streamed answer must start within ``timeouts.first_token_sec``; a whole answer may take
        the total budget. Content-free chunks before the first substantive frame (a role-only delta)
        are held back and reach ``sink`` with it. A failure after that is handed to
        :meth:`FrameSink.broken` before it is raised. Cancellation (the client left) releases the
        stream and charges the node nothing.

        Raises:
            BackendError: the attempt failed (already recorded; ``committed`` tells whether ``sink``
                had taken anything).
        """
        gw = self.gw
        gw.observations.started(self.peer_id)
        self.sent_at = time.perf_counter()
        try:
            self._frames = gw.network.infer(self.peer_id, self.request)
            frames = await self._first()
            self.committed = True
            self.ctx.node = self.peer_id
            while not await sink.take(frames):
                frames = await self._more()
        except BackendError as exc:
            await self._broken(exc, sink)
            raise
        except Exception as exc:
            if not self.committed:
                raise
            log.warning("answer %s broke: %s", self.request.request_id, type(exc).__name__, exc_info=exc)
            error = UpstreamError(f"stream broken: {type(exc).__name__}")
            await self._broken(error, sink)
            raise error from None
        else:
            if self._observed:
                self._succeeded()
        finally:
            await self._release()

    async def _broken(self, error: BackendError, sink: FrameSink) -> None:
        """Record the failure, release the node stream, and let a sink that took frames end its answer."""
        if self._observed:
            self._failed(error)
        await self._release()
        if self.committed:
            await sink.broken(error)

    # -- reading -------------------------------------------------------------------------------

    async def _first(self) -> list[ResponseFrame]:
        """The frames up to the first substantive one (held-back preamble first)."""
        timeouts = self.gw.config.timeouts
        first_by = self.sent_at + timeouts.first_token_sec if self.request.stream else self.deadline
        held = [await self._read(first_by)]
        while is_preamble(held[-1]):
            held.append(await self._read(first_by))
        if isinstance(held[-1], Done):
            raise MalformedResponse("the node ended the answer before sending anything")
        self.first_at = time.perf_counter()
        ttft = self.first_at - self.sent_at
        if self._observed:
            self.gw.observations.first_token(self.peer_id, ttft * 1000.0)
            self.gw.metrics.ttft.labels(model=self.request.model).observe(ttft)
        return held

    async def _more(self) -> list[ResponseFrame]:
        """The next frames: waits for one (idle and total limits), then takes those already arrived."""
        if self._pending_error is not None:
            raise self._pending_error
        ready = getattr(self._frames, "ready_nowait", None)
        frames = self._accept_ready(ready()) if ready is not None else []
        if frames:  # frames already delivered need no wait, so no timer either
            return frames
        if self._pending_error is not None:
            raise self._pending_error
        idle = self.gw.config.timeouts.idle_sec
        by = min(time.perf_counter() + idle, self.deadline)
        frames = [await self._read(by)]
        if ready is not None and not isinstance(frames[0], Done):
            frames += self._accept_ready(ready())
        return frames

    def _accept_ready(self, ready: list[ResponseFrame]) -> list[ResponseFrame]:
        """Check frames taken without waiting; a bad one is raised on the next call, after those before it."""
        frames: list[ResponseFrame] = []
        for frame in ready:
            try:
                frames.append(self._accept(frame))
            except BackendError as exc:
                self._pending_error = exc
                break
            if isinstance(frame, Done):
                break
        return frames

    def _limit(self, by: float) -> str:
        """Which configured limit a wait until ``by`` enforces, for the timeout message."""
        timeouts = self.gw.config.timeouts
        if by >= self.deadline:
            return f"the request exceeded timeouts.total_request_sec ({timeouts.total_request_sec:g} s)"
        if self.first_at is None:
            return f"no first token within timeouts.first_token_sec ({timeouts.first_token_sec:g} s)"
        return f"no data from the node within timeouts.idle_sec ({timeouts.idle_sec:g} s)"

    async def _read(self, by: float) -> ResponseFrame:
        """One frame, waiting until ``by`` at most; node failures become :class:`BackendError`."""
        frames = self._frames
        if frames is None:
            raise BackendUnavailable("the attempt was already released")
        by = min(by, self.deadline)
        t0 = time.perf_counter()
        try:
            # asyncio's own timer: the gateway always runs on asyncio (uvicorn), and anyio's
            # fail_after cost three times as much per wait (backend lookup, task bookkeeping).
            async with asyncio.timeout(max(by - t0, 0.0)):
                frame = await anext(frames)
        except StopAsyncIteration:
            raise MalformedResponse("the node closed the stream before the answer was complete") from None
        except TimeoutError:
            raise BackendTimeout(self._limit(by)) from None
        except BackendError:
            raise
        except OSError as exc:
            raise BackendUnavailable(f"connection to the node failed: {type(exc).__name__}") from None
        except Exception as exc:
            log.warning("unexpected %s from the network layer", type(exc).__name__, exc_info=exc)
            raise UpstreamError(f"network error: {type(exc).__name__}") from None
        finally:
            self.ctx.waited_s += time.perf_counter() - t0
        return self._accept(frame)

    def _accept(self, frame: ResponseFrame) -> ResponseFrame:
        for check in self._checks:
            check(frame)
        if isinstance(frame, ErrorFrame):
            self.reported = frame
            raise node_error(frame)  # the gateway's words; the node's text is logged by the frame check
        if isinstance(frame, UsageFrame):
            self.usage = frame
        elif isinstance(frame, ChunkFrame) and carries_token(frame.data):
            self.last_token_at = time.perf_counter()
        return frame

    # -- outcome -------------------------------------------------------------------------------

    def _decode_phase(self, usage: UsageFrame | None) -> tuple[int | None, float]:
        """Tokens decoded after the first one, and the time they took: the node's decode speed.

        Only a streamed answer shows its decode phase (first to last token); a whole answer arrives
        at once, and dividing its tokens by the time since it arrived gave 47,000-890,000 tok/s for
        a node that makes ~110, so it records none.
        """
        if not self.request.stream or usage is None or self.first_at is None or self.last_token_at is None:
            return None, 0.0
        return usage.completion_tokens - 1, self.last_token_at - self.first_at

    def _succeeded(self) -> None:
        """The answer reached the sink whole."""
        gw = self.gw
        usage = self.usage
        if usage is not None:
            model = self.request.model
            gw.metrics.tokens.labels(model=model, kind="prompt").inc(usage.prompt_tokens)
            gw.metrics.tokens.labels(model=model, kind="completion").inc(usage.completion_tokens)
        gw.observations.succeeded(self.peer_id, *self._decode_phase(usage))

    def _failed(self, error: BackendError) -> None:
        """The attempt failed with ``error``; the node is charged only when it is its own fault."""
        model = self.request.model
        if error.node_fault:
            self.gw.observations.failed(self.peer_id, type(error).__name__)
            self.gw.metrics.node_errors.labels(peer_id=self.peer_id, type=error.error_type).inc()
            # The message may quote the model server, which echoes the request (tools, schemas):
            # request content, so it is logged only at DEBUG.
            log.warning("node %s failed for model %s: %s", self.peer_id, model, type(error).__name__)
            log.debug("node %s failure detail: %s", self.peer_id, error.message)
        else:
            log.info("node %s answered %s for model %s (not its fault)", self.peer_id, type(error).__name__, model)

    async def _release(self) -> None:
        """Close the node stream (resetting it if the answer is unfinished) and stop counting it in flight."""
        if self._released:
            return
        self._released = True
        frames, self._frames = self._frames, None
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True), suppress(Exception):
                await aclose()
        self.gw.observations.finished(self.peer_id)


def canary_sender(gw: Gateway) -> CanarySender:
    """How the canary prober sends a canary: through :class:`NodeAttempt`, exactly like user traffic.

    The same reads, timeouts (the first token within ``timeouts.first_token_sec``, idle gaps within
    ``timeouts.idle_sec``, the whole answer within the canary's ``timeout_s``), preamble hold-back,
    error frames and stream release; a node cannot tell a canary from a user's request by how its
    answer is read. Only what stays inside the gateway differs: the frames pass the plain shape check
    (the prober judges the answer itself and quarantines on its own verdict), the canary counts as
    load but its outcome moves no routing figure or metric (``observed=False``), and no completion,
    usage row or receipt is recorded.
    """

    async def send(peer_id: str, request: InferRequest, sink: FrameSink, timeout_s: float) -> str | None:
        ctx = RequestContext(request.request_id, debug=False)
        checks = (FrameCheck(peer_id, request.kind),)
        deadline = time.perf_counter() + timeout_s
        attempt = NodeAttempt(gw, peer_id, request, deadline, ctx, checks, observed=False)
        try:
            await attempt.answer(sink)
        except BackendError:
            if attempt.reported is not None:  # the node's own error: the prober reads its code
                return attempt.reported.code
            raise
        return None

    return send
