"""Relaying a node's frames to the client: one JSON answer, or Server-Sent Events.

Streams are passed through chunk by chunk as they arrive (no buffering). Every wait for the next
frame is bounded by ``timeouts.idle_sec`` and by what is left of ``total_request_sec``. A failure
after the first chunk cannot fail over any more, so it ends the stream with an explicit error event,
``data: {"error": {...}}``, and *no* ``data: [DONE]``: OpenAI's SDKs raise on that event, and a
client that only watches for ``[DONE]`` sees an incomplete stream instead of a silently short one.

Usage: the node is always asked for usage (see :func:`tooti.gateway.body.upstream_body`) so the
gateway can count tokens; the usage chunk is forwarded only when the client asked for it, and
synthesised from the node's usage frame when the backend put usage nowhere else.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from tooti.errors import BackendError, BackendTimeout, MalformedResponse, UpstreamError
from tooti.gateway.api_errors import error_body, from_backend_error
from tooti.wire.error_codes import error_from_frame
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, ResponseFrame, ResultFrame, UsageFrame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.gateway.body import ParsedBody
    from tooti.gateway.context import RequestContext
    from tooti.gateway.dispatch import Opened
    from tooti.gateway.service import Gateway

__all__ = ["collect_result", "sse_events"]

log = logging.getLogger(__name__)

DONE_EVENT = b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(data) + b"\n\n"


def _usage_dict(u: UsageFrame) -> dict[str, int]:
    return {"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total_tokens}


async def _next(frames: AsyncIterator[ResponseFrame], wait_s: float, ctx: RequestContext, what: str) -> ResponseFrame:
    t0 = time.perf_counter()
    try:
        with anyio.fail_after(max(wait_s, 0.0)):
            return await anext(frames)
    except StopAsyncIteration:
        raise MalformedResponse("the node closed the stream before the answer was complete") from None
    except TimeoutError:
        raise BackendTimeout(f"{what} exceeded ({wait_s:.1f} s)") from None
    finally:
        ctx.waited_s += time.perf_counter() - t0


def _wait(opened: Opened, gw: Gateway) -> tuple[float, str]:
    idle, left = gw.config.timeouts.idle_sec, opened.remaining()
    return (idle, "idle timeout between chunks") if idle < left else (left, "total request timeout")


class _StreamState:
    """Usage and counters of one streamed answer."""

    def __init__(self, parsed: ParsedBody) -> None:
        self.parsed = parsed
        self.usage: dict[str, Any] | None = None
        self.usage_sent = False
        self.template: dict[str, Any] = {}

    def chunk(self, data: dict[str, Any]) -> dict[str, Any] | None:
        """The chunk to forward (``None`` to drop it), keeping its usage for the gateway."""
        usage = data.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        if not self.template:
            self.template = {k: data[k] for k in ("id", "object", "created", "model") if k in data}
        if self.parsed.include_usage:
            self.usage_sent = self.usage_sent or isinstance(usage, dict)
            return data
        if "usage" in data:
            data = {k: v for k, v in data.items() if k != "usage"}
            if not data.get("choices"):
                return None
        return data

    def final_usage_event(self) -> bytes | None:
        if not self.parsed.include_usage or self.usage_sent or self.usage is None:
            return None
        return _event({**self.template, "choices": [], "usage": self.usage})


def _result_as_chunk(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A whole answer in chunk form, for nodes that could not stream this request kind."""
    if kind != "chat":
        return data
    choices = [
        {"index": c.get("index", 0), "delta": c.get("message", {}), "finish_reason": c.get("finish_reason")}
        for c in data.get("choices", [])
        if isinstance(c, dict)
    ]
    return {**data, "object": "chat.completion.chunk", "choices": choices}


def _events_for(frame: ResponseFrame, state: _StreamState) -> list[bytes]:
    if isinstance(frame, ChunkFrame | ResultFrame):
        data = frame.data if isinstance(frame, ChunkFrame) else _result_as_chunk(state.parsed.kind, frame.data)
        out = state.chunk(data)
        return [] if out is None else [_event(out)]
    if isinstance(frame, UsageFrame):
        if state.usage is None:
            state.usage = _usage_dict(frame)
        return []
    if isinstance(frame, ErrorFrame):
        raise error_from_frame(frame)
    return []


def _count_tokens(gw: Gateway, model: str, usage: dict[str, Any] | None) -> int | None:
    if not usage:
        return None
    completion = usage.get("completion_tokens")
    prompt = usage.get("prompt_tokens")
    if isinstance(prompt, int):
        gw.metrics.tokens.labels(model=model, kind="prompt").inc(prompt)
    if isinstance(completion, int):
        gw.metrics.tokens.labels(model=model, kind="completion").inc(completion)
        return completion
    return None


async def sse_events(gw: Gateway, opened: Opened, parsed: ParsedBody, ctx: RequestContext) -> AsyncIterator[bytes]:
    """Yield the SSE byte stream of a committed answer, ending in ``[DONE]`` or an error event."""
    state = _StreamState(parsed)
    frame = opened.first
    failure: BackendError | None = None
    try:
        for held in opened.preamble:
            for event in _events_for(held, state):
                yield event
        while not isinstance(frame, Done):
            for event in _events_for(frame, state):
                yield event
            wait, what = _wait(opened, gw)
            frame = await _next(opened.frames, wait, ctx, what)
    except BackendError as exc:
        failure = exc
    except Exception as exc:
        log.warning("stream %s broke: %s", ctx.request_id, type(exc).__name__, exc_info=exc)
        failure = UpstreamError(f"stream broken: {type(exc).__name__}")
    finally:
        await opened.release()
    if failure is not None:
        gw.observations.failed(opened.peer_id, type(failure).__name__)
        gw.metrics.stream_errors.labels(model=parsed.model).inc()
        log.warning("stream %s from %s ended by %s", ctx.request_id, opened.peer_id, type(failure).__name__)
        api = from_backend_error(failure)
        yield _event(error_body(f"the node failed mid-stream: {api.message}", api.error_type, code=api.code))
        return
    final = state.final_usage_event()
    if final is not None:
        yield final
    tokens = _count_tokens(gw, parsed.model, state.usage)
    gw.observations.succeeded(opened.peer_id, tokens, time.perf_counter() - opened.first_at)
    yield DONE_EVENT


async def collect_result(gw: Gateway, opened: Opened, parsed: ParsedBody, ctx: RequestContext) -> dict[str, Any]:
    """Read a whole (non-streamed) answer: the result frame, then usage and Done."""
    usage: dict[str, Any] | None = None
    try:
        first = opened.first
        if not isinstance(first, ResultFrame):
            raise MalformedResponse(f"expected a whole answer, got a {type(first).__name__}")
        result = dict(first.data)
        frame: ResponseFrame = first
        while not isinstance(frame, Done):
            wait, what = _wait(opened, gw)
            frame = await _next(opened.frames, wait, ctx, what)
            if isinstance(frame, UsageFrame):
                usage = _usage_dict(frame)
            elif isinstance(frame, ErrorFrame):
                raise error_from_frame(frame)
    except BackendError as exc:
        gw.observations.failed(opened.peer_id, type(exc).__name__)
        raise from_backend_error(exc) from None
    finally:
        await opened.release()
    if usage is not None and not isinstance(result.get("usage"), dict):
        result["usage"] = usage
    tokens = _count_tokens(gw, parsed.model, result.get("usage"))
    gw.observations.succeeded(opened.peer_id, tokens, time.perf_counter() - opened.first_at)
    return result
