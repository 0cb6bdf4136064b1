"""One request attempt on one node, owned by one object from opening the call to releasing it.

:class:`NodeAttempt` is the only code that talks to the node for a request: it opens the call, reads
frames under the timeouts (first token, idle gap, total budget; a timeout names the limit that
fired), runs the frame checks, keeps the usage the node reported, records the outcome exactly once
(observations, metrics, cooldown, the completion callback) and releases the stream. The failover
loop (:mod:`tooti.gateway.dispatch`) and the relay (:mod:`tooti.gateway.relay`) only call it.

Whether a failure is the node's fault is decided by the error's type (``BackendError.node_fault``,
see the failure table in docs/gateway.md): only the node's own failures count against it and put it
in cooldown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import suppress
from typing import TYPE_CHECKING

import anyio

from tooti.errors import BackendError, BackendTimeout, BackendUnavailable, MalformedResponse, UpstreamError
from tooti.gateway.request_hooks import Completion, CompletionStatus
from tooti.trust.frame_check import node_error
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, UsageFrame, carries_token, is_responses_preamble

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.gateway.context import RequestContext
    from tooti.gateway.service import Gateway
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["NodeAttempt", "is_preamble"]

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
        gw: the gateway (network, observations, metrics, hooks, timeouts).
        peer_id: the node.
        request: what is sent.
        deadline: ``time.perf_counter()`` value at which ``timeouts.total_request_sec`` runs out.
        ctx: the client request's bookkeeping (time spent waiting on nodes).
        routed_at: when the client request was routed (for the completion's duration).
        failovers: nodes tried before this one.
    """

    __slots__ = (
        "_checks",
        "_frames",
        "_held",
        "_pending_error",
        "_released",
        "_settled",
        "committed",
        "ctx",
        "deadline",
        "failovers",
        "first_at",
        "gw",
        "last_token_at",
        "peer_id",
        "request",
        "routed_at",
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
        *,
        routed_at: float,
        failovers: int,
    ) -> None:
        self.gw = gw
        self.peer_id = peer_id
        self.request = request
        self.deadline = deadline
        self.ctx = ctx
        self.routed_at = routed_at
        self.failovers = failovers
        self.committed = False
        """Set by the failover loop when this attempt answers the client (completion is reported)."""
        self.usage: UsageFrame | None = None
        self.sent_at = 0.0
        self.first_at: float | None = None
        self.last_token_at: float | None = None
        """When the last frame carrying a token arrived (the end of the decode phase)."""
        self._frames: AsyncIterator[ResponseFrame] | None = None
        self._held: list[ResponseFrame] = []
        self._pending_error: BackendError | None = None
        self._checks = gw.hooks.checks_for(request, peer_id)
        self._settled = False
        self._released = False

    # -- reading -------------------------------------------------------------------------------

    async def open(self) -> None:
        """Send the request and wait until the first substantive frame is in hand.

        A streamed answer must start within ``timeouts.first_token_sec``; a whole answer may take
        the total budget. Content-free chunks before it (a role-only delta) are held back with it.

        Raises:
            BackendError: the attempt failed (already recorded and released).
        """
        gw = self.gw
        gw.observations.started(self.peer_id)
        self.sent_at = time.perf_counter()
        try:
            self._frames = gw.network.infer(self.peer_id, self.request)
            timeouts = gw.config.timeouts
            first_by = self.sent_at + timeouts.first_token_sec if self.request.stream else self.deadline
            frame = await self._read(first_by)
            while is_preamble(frame):
                self._held.append(frame)
                frame = await self._read(first_by)
            if isinstance(frame, Done):
                raise MalformedResponse("the node ended the answer before sending anything")
            self._held.append(frame)
        except BackendError as exc:
            self.fail(exc)
            await self.release()
            raise
        except BaseException:
            await self.release()
            raise
        self.first_at = time.perf_counter()
        ttft = self.first_at - self.sent_at
        gw.observations.first_token(self.peer_id, ttft * 1000.0)
        gw.metrics.ttft.labels(model=self.request.model).observe(ttft)

    def take_held(self) -> list[ResponseFrame]:
        """The frames read while opening (held-back preamble, then the first substantive frame)."""
        held, self._held = self._held, []
        return held

    async def more(self) -> list[ResponseFrame]:
        """The next frames: waits for one (idle and total limits), then takes those already arrived.

        Raises:
            BackendError: the node failed, sent an error frame, or a limit fired.
        """
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

    def _decode_phase(self, usage: UsageFrame | None) -> tuple[int | None, float]:
        """Tokens decoded after the first one, and the time they took: the node's decode speed.

        Only a streamed answer shows its decode phase (first to last token); a whole answer arrives
        at once, and dividing its tokens by the time since it arrived gave 47,000-890,000 tok/s for
        a node that makes ~110, so it records none.
        """
        if not self.request.stream or usage is None or self.first_at is None or self.last_token_at is None:
            return None, 0.0
        return usage.completion_tokens - 1, self.last_token_at - self.first_at

    def _accept(self, frame: ResponseFrame) -> ResponseFrame:
        for check in self._checks:
            check(frame)
        if isinstance(frame, ErrorFrame):
            raise node_error(frame)  # the gateway's words; the node's text is logged by the frame check
        if isinstance(frame, UsageFrame):
            self.usage = frame
        elif isinstance(frame, ChunkFrame) and carries_token(frame.data):
            self.last_token_at = time.perf_counter()
        return frame

    # -- outcome -------------------------------------------------------------------------------

    def succeed(self) -> None:
        """The answer reached the client whole."""
        self._settle("ok", None)

    def fail(self, error: BackendError) -> None:
        """The attempt failed with ``error``; the node is charged only when it is its own fault."""
        self._settle("failed", error)

    def _settle(self, status: CompletionStatus, error: BackendError | None) -> None:
        if self._settled:
            return
        self._settled = True
        gw = self.gw
        model = self.request.model
        if status == "ok":
            usage = self.usage
            if usage is not None:
                gw.metrics.tokens.labels(model=model, kind="prompt").inc(usage.prompt_tokens)
                gw.metrics.tokens.labels(model=model, kind="completion").inc(usage.completion_tokens)
            gw.observations.succeeded(self.peer_id, *self._decode_phase(usage))
        elif error is not None:
            if error.node_fault:
                gw.observations.failed(self.peer_id, type(error).__name__)
                gw.metrics.node_errors.labels(peer_id=self.peer_id, type=error.error_type).inc()
                # The message may quote the model server, which echoes the request (tools, schemas):
                # request content, so it is logged only at DEBUG.
                log.warning("node %s failed for model %s: %s", self.peer_id, model, type(error).__name__)
                log.debug("node %s failure detail: %s", self.peer_id, error.message)
            else:
                log.info("node %s answered %s for model %s (not its fault)", self.peer_id, type(error).__name__, model)
        if self.committed:
            self.report(status, error)

    def report(self, status: CompletionStatus, error: BaseException | None) -> None:
        """Hand the client request's outcome to the completion callbacks (once per request)."""
        hooks = self.gw.hooks
        if not hooks.on_complete:
            return
        hooks.completed(
            Completion(
                request_id=self.ctx.request_id,
                model=self.request.model,
                peer_id=self.peer_id,
                usage=self.usage,
                ttft_s=None if self.first_at is None else self.first_at - self.sent_at,
                duration_s=time.perf_counter() - self.routed_at,
                status=status,
                failovers=self.failovers,
                error=None if error is None else type(error).__name__,
                node_fault=getattr(error, "node_fault", error is not None),
            )
        )

    async def release(self) -> None:
        """Close the node stream and stop counting the request as in flight. Idempotent.

        Called when the relay ends, and again by the response's background task: a client that
        disconnects before the SSE body starts leaves the relay generator unstarted, so its own
        ``finally`` would never run. An attempt released before it settled was abandoned by the
        client (``cancelled``; nothing is charged to the node).
        """
        if self._released:
            return
        self._released = True
        self._settle("cancelled", None)
        frames, self._frames = self._frames, None
        aclose = getattr(frames, "aclose", None)
        if aclose is not None:
            with anyio.CancelScope(shield=True), suppress(Exception):
                await aclose()
        self.gw.observations.finished(self.peer_id)
