"""Sending one request to the best node and failing over until a first frame arrives.

Before the first frame nothing has reached the client, so a retryable failure (connection error,
timeout, 5xx, 429, malformed stream) moves the request to the next candidate, up to
``routing.max_attempts`` with a short backoff; the failing node goes into cooldown. Once the first
frame is in hand the caller commits the HTTP response and failover is no longer possible.
"""

from __future__ import annotations

import logging
import time
from contextlib import suppress
from typing import TYPE_CHECKING

import anyio

from tooti.errors import (
    BackendError,
    BackendTimeout,
    BackendUnavailable,
    MalformedResponse,
    ModelNotFound,
    UpstreamError,
)
from tooti.gateway.api_errors import ApiError
from tooti.gateway.body import upstream_body, upstream_streams
from tooti.wire.error_codes import error_from_frame
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, InferRequest, ResponseFrame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.gateway.body import ParsedBody
    from tooti.gateway.context import RequestContext
    from tooti.gateway.observations import Observations
    from tooti.gateway.service import Gateway
    from tooti.routing.protocol import Preferences

__all__ = ["Opened", "aclose_quietly", "open_request"]

log = logging.getLogger(__name__)

_BACKOFF_S = 0.05


class Opened:
    """A request a node has started answering."""

    __slots__ = (
        "_observations",
        "_released",
        "deadline",
        "first",
        "first_at",
        "frames",
        "peer_id",
        "preamble",
        "request",
    )

    def __init__(
        self,
        observations: Observations,
        peer_id: str,
        request: InferRequest,
        frames: AsyncIterator[ResponseFrame],
        first: ResponseFrame,
        deadline: float,
        preamble: tuple[ResponseFrame, ...] = (),
    ) -> None:
        self.peer_id = peer_id
        self.request = request
        self.frames = frames
        self.preamble = preamble
        """Content-free chunks (e.g. the role-only delta) that arrived before ``first``, held back."""
        self.first = first
        self.first_at = time.perf_counter()
        self.deadline = deadline
        """``time.perf_counter()`` value after which the request has exceeded ``total_request_sec``."""
        self._observations = observations
        self._released = False

    def remaining(self) -> float:
        """Seconds left of the total budget."""
        return self.deadline - time.perf_counter()

    async def release(self) -> None:
        """Close the node stream and stop counting the request as in flight. Idempotent.

        Called when the relay ends, and again by the response's background task: a client that
        disconnects before the SSE body starts leaves the relay generator unstarted, so its own
        ``finally`` would never run.
        """
        if self._released:
            return
        self._released = True
        await aclose_quietly(self.frames)
        self._observations.finished(self.peer_id)


async def aclose_quietly(frames: AsyncIterator[ResponseFrame]) -> None:
    """Close a node stream (resets it on the wire); errors while closing are irrelevant by then."""
    aclose = getattr(frames, "aclose", None)
    if aclose is not None:
        with anyio.CancelScope(shield=True), suppress(Exception):
            await aclose()


def _is_preamble(frame: ResponseFrame) -> bool:
    """A chunk that carries no token yet: only a role, empty content, no finish reason, no usage.

    Committing the HTTP response on such a chunk would forfeit failover for a node that dies before
    its first real token, so the gateway holds these back until something substantive arrives.
    """
    if not isinstance(frame, ChunkFrame) or frame.data.get("usage"):
        return False
    for choice in frame.data.get("choices") or ():
        if not isinstance(choice, dict) or choice.get("finish_reason"):
            return False
        delta = choice.get("delta")
        if not isinstance(delta, dict) or any(v for k, v in delta.items() if k != "role"):
            return False
    return True


async def _first_frames(
    frames: AsyncIterator[ResponseFrame], wait_s: float, ctx: RequestContext
) -> tuple[tuple[ResponseFrame, ...], ResponseFrame]:
    """Read until the first substantive frame; return the held-back preamble and that frame."""
    t0 = time.perf_counter()
    preamble: list[ResponseFrame] = []
    try:
        with anyio.fail_after(max(wait_s, 0.0)):
            frame = await anext(frames)
            while _is_preamble(frame):
                preamble.append(frame)
                frame = await anext(frames)
    except StopAsyncIteration:
        raise MalformedResponse("the node closed the stream without answering") from None
    except TimeoutError:
        raise BackendTimeout(f"no first token within {wait_s:.1f} s") from None
    except BackendError:
        raise
    except OSError as exc:
        raise BackendUnavailable(f"connection to the node failed: {type(exc).__name__}") from None
    except Exception as exc:
        log.warning("unexpected %s from the network layer", type(exc).__name__, exc_info=exc)
        raise UpstreamError(f"network error: {type(exc).__name__}") from None
    finally:
        ctx.waited_s += time.perf_counter() - t0
    if isinstance(frame, ErrorFrame):
        raise error_from_frame(frame)
    if isinstance(frame, Done):
        raise MalformedResponse("the node ended the answer before sending anything")
    return tuple(preamble), frame


async def _attempt(gw: Gateway, peer_id: str, request: InferRequest, deadline: float, ctx: RequestContext) -> Opened:
    timeouts = gw.config.timeouts
    remaining = deadline - time.perf_counter()
    # A streamed answer must start within first_token_sec; a whole answer may take the full budget.
    wait = min(timeouts.first_token_sec, remaining) if request.stream else remaining
    obs = gw.observations
    obs.started(peer_id)
    started = time.perf_counter()
    frames: AsyncIterator[ResponseFrame] | None = None
    try:
        frames = gw.network.infer(peer_id, request)
        preamble, first = await _first_frames(frames, wait, ctx)
    except BaseException:
        obs.finished(peer_id)
        if frames is not None:
            await aclose_quietly(frames)
        raise
    ttft = time.perf_counter() - started
    obs.first_token(peer_id, ttft * 1000.0)
    gw.metrics.ttft.labels(model=request.model).observe(ttft)
    return Opened(obs, peer_id, request, frames, first, deadline, preamble)


def _record_failure(gw: Gateway, peer_id: str, exc: BackendError, model: str) -> None:
    # A node that lacks the model, or that rejected a bad request, is healthy: resting it would
    # hide it from requests it can serve.
    rest = exc.retryable and not isinstance(exc, ModelNotFound)
    gw.observations.failed(peer_id, type(exc).__name__, cooldown=rest)
    gw.metrics.node_errors.labels(peer_id=peer_id, type=exc.error_type).inc()
    log.warning("node %s failed for model %s: %s: %s", peer_id, model, type(exc).__name__, exc.message)


async def open_request(gw: Gateway, parsed: ParsedBody, prefs: Preferences, ctx: RequestContext) -> Opened:
    """Route ``parsed`` and return the first node that starts answering.

    Raises:
        ApiError: no node may serve the request (404, 503, 400) or the total budget ran out.
        BackendError: the last attempt's error when every attempt failed, or a non-retryable one.
    """
    decision = gw.decide(prefs)
    ctx.reasons = (f"strategy={decision.strategy}", *decision.reasons)
    total = gw.config.timeouts.total_request_sec
    deadline = time.perf_counter() + total
    request = InferRequest(
        request_id=ctx.request_id,
        model=parsed.model,
        kind=parsed.kind,
        stream=upstream_streams(parsed),
        body=upstream_body(parsed),
        deadline_ms=int((time.time() + total) * 1000),
    )
    last: BackendError | None = None
    for attempt, candidate in enumerate(decision.ordered[: gw.config.routing.max_attempts]):
        if attempt:
            gw.metrics.failovers.labels(model=parsed.model, reason=type(last).__name__).inc()
            await anyio.sleep(min(_BACKOFF_S * attempt, max(deadline - time.perf_counter(), 0.0)))
        if deadline - time.perf_counter() <= 0:
            break
        try:
            opened = await _attempt(gw, candidate.peer_id, request, deadline, ctx)
        except BackendError as exc:
            _record_failure(gw, candidate.peer_id, exc, parsed.model)
            if not exc.retryable:
                raise
            last = exc
            continue
        ctx.node = candidate.peer_id
        return opened
    if last is None:
        raise ApiError(504, "the request ran out of time before a node answered", code="timeout")
    raise last
