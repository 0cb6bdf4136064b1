"""Serving one :class:`~tooti.wire.infer.InferRequest` with a backend, as a sequence of response frames.

Event-loop agnostic (plain awaits and anyio), so the trio node agent and the asyncio
:class:`~tooti.node.local.LocalNetwork` share it. Prompts and completions are never logged.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from tooti._aio import closing_iter
from tooti.backends.endpoints import create_response, stream_completion, stream_response
from tooti.errors import BackendBadRequest, BackendError, BackendTimeout
from tooti.wire.error_codes import error_to_frame
from tooti.wire.infer import (
    ChunkFrame,
    Done,
    ErrorFrame,
    InferRequest,
    ResponseFrame,
    ResultFrame,
    UsageFrame,
    carries_token,
    embeddings_usage_frame,
    usage_frame,
)

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable

    from tooti.backends.protocol import InferenceBackend, JSONObject
    from tooti.node.perf import PerfTracker
    from tooti.node.receipt_signer import ReceiptTally

__all__ = ["handle_request", "responses_usage_frame"]

log = logging.getLogger(__name__)


DEADLINE_GUARD_S = 30.0
"""Within this many seconds of its deadline, a streamed answer waits for each chunk under a timer."""


def _remaining(deadline_ms: int) -> float:
    """Seconds left before the request's deadline (``inf`` without one)."""
    if deadline_ms <= 0:
        return float("inf")
    return deadline_ms / 1000.0 - time.time()


def _unary_call(backend: InferenceBackend, kind: str) -> Callable[[JSONObject], Awaitable[JSONObject]]:
    if kind == "chat":
        return backend.chat
    if kind == "completion":
        return backend.completion
    if kind == "responses":
        return partial(create_response, backend)
    return backend.embeddings


async def _unary(backend: InferenceBackend, request: InferRequest, body: JSONObject) -> AsyncIterator[ResponseFrame]:
    with anyio.fail_after(_remaining(request.deadline_ms)):
        result = await _unary_call(backend, request.kind)(body)
    if request.kind == "responses":
        # A response object keeps its own usage (input/output tokens); the frame is for metering.
        usage = responses_usage_frame(result)
    else:
        read = embeddings_usage_frame if request.kind == "embeddings" else usage_frame
        usage = read(result.get("usage"))
        if usage is not None:
            result = {k: v for k, v in result.items() if k != "usage"}
    yield ResultFrame(data=result)
    if usage is not None:
        yield usage


def responses_usage_frame(response: Any) -> UsageFrame | None:
    """The usage frame for a Responses API ``response`` object (``input_tokens``/``output_tokens``)."""
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("input_tokens"), usage.get("output_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return UsageFrame(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


class _StreamStats:
    """Timing of one streamed answer, for the node's moving averages."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.last = self.started
        self.tokens = 0
        self.usage: UsageFrame | None = None

    def see(self, chunk: JSONObject) -> JSONObject | None:
        """Count ``chunk``; return it without its usage (kept for the usage frame), ``None`` if nothing is left."""
        if carries_token(chunk):
            now = time.perf_counter()
            self.tokens += 1
            self.last = now
            if self.first is None:
                self.first = now
        if isinstance(chunk.get("type"), str):  # a Responses event: its usage stays in the final event
            self.usage = responses_usage_frame(chunk.get("response")) or self.usage
            return chunk
        if "usage" not in chunk:
            return chunk
        usage = usage_frame(chunk.get("usage"))
        if usage is None:
            return chunk
        self.usage = usage
        rest = {k: v for k, v in chunk.items() if k != "usage"}
        return rest if rest.get("choices") else None

    def report(self, perf: PerfTracker) -> None:
        if self.first is None:
            return
        perf.record_ttft((self.first - self.started) * 1000.0)
        generated = self.usage.completion_tokens if self.usage is not None else self.tokens
        perf.record_decode(generated - 1, self.last - self.first)


def _stream_source(backend: InferenceBackend, request: InferRequest, body: JSONObject) -> AsyncIterator[JSONObject]:
    if request.kind == "completion":
        return stream_completion(backend, body)
    if request.kind == "responses":
        return stream_response(backend, body)
    return backend.chat_stream(body)


async def _streamed(
    backend: InferenceBackend, request: InferRequest, body: JSONObject, perf: PerfTracker | None
) -> AsyncIterator[ResponseFrame]:
    stats = _StreamStats()
    async with closing_iter(_stream_source(backend, request, body)) as chunks:
        iterator = aiter(chunks)
        while True:
            remaining = _remaining(request.deadline_ms)
            if remaining > DEADLINE_GUARD_S:
                # Far from the deadline a timer per chunk is pure cost: the p2p service enforces
                # the deadline around the whole answer, and a stalled server is also bounded by
                # the backend's read timeout and by the gateway, which resets the stream at its own.
                try:
                    chunk = await anext(iterator)
                except StopAsyncIteration:
                    break
            else:
                # The scope wraps only the wait, never a yield: cancel scopes must not span a yield.
                with anyio.fail_after(remaining):
                    try:
                        chunk = await anext(iterator)
                    except StopAsyncIteration:
                        break
            data = stats.see(chunk)
            if data is not None:
                yield ChunkFrame(data=data)
    if stats.usage is not None:
        yield stats.usage
    if perf is not None:
        stats.report(perf)


def _frames(backend: InferenceBackend, request: InferRequest, perf: PerfTracker | None) -> AsyncIterator[ResponseFrame]:
    body: JSONObject = {**request.body, "model": request.model}
    if request.stream and request.kind != "embeddings":
        return _streamed(backend, request, body, perf)
    return _unary(backend, request, body)


async def handle_request(
    backend: InferenceBackend,
    request: InferRequest,
    *,
    perf: PerfTracker | None = None,
    tally: ReceiptTally | None = None,
) -> AsyncGenerator[ResponseFrame, None]:
    """Run ``request`` on ``backend`` and yield its response frames, ending with Done or an ErrorFrame.

    A streamed chat, completion or Responses request yields one :class:`ChunkFrame` per backend chunk
    or Responses event (:mod:`tooti.backends.endpoints` picks pass-through or translation); other
    requests yield one :class:`ResultFrame`. The backend's usage leaves the chunks and the result and is sent once, as
    the :class:`UsageFrame` that follows (a chunk that carried only usage is not sent); what the
    client sees of it is the gateway's decision. Backend
    failures become an :class:`ErrorFrame` (never an exception); closing this generator early closes
    the backend's stream, which stops generation upstream.

    With ``tally`` (the gateway asked for a signed receipt) every frame is shown to it and its
    receipt goes out just before ``Done``; a failed request gets none (nothing to be paid for).
    """
    if request.kind not in ("chat", "completion", "embeddings", "responses"):
        yield error_to_frame(BackendBadRequest(f"unknown request kind {request.kind!r}"))
        return
    if _remaining(request.deadline_ms) <= 0:
        yield error_to_frame(BackendTimeout("request deadline already passed"))
        return
    failure: ErrorFrame | None = None
    try:
        async with closing_iter(_frames(backend, request, perf)) as frames:
            async for frame in frames:
                if tally is not None:
                    tally.see(frame)
                yield frame
    except TimeoutError:
        failure = error_to_frame(BackendTimeout("request deadline exceeded on the node"))
    except BackendError as exc:
        failure = error_to_frame(exc)
    except Exception as exc:  # noqa: BLE001 - a plugin bug becomes an error frame, never a dead stream
        log.warning(
            "backend %s failed on request %s: %s", type(backend).__name__, request.request_id, type(exc).__name__
        )
        failure = ErrorFrame(code="upstream", message=f"backend error: {type(exc).__name__}")
    if failure is not None:
        yield failure
        return
    if perf is not None:
        perf.record_request()
    if tally is not None:
        yield tally.receipt()
    yield Done()
