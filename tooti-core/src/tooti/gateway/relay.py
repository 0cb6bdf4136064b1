"""What the client sees of a node's answer: one JSON object, or Server-Sent Events.

The relay decides the client's view and nothing else; reading the node, timeouts and bookkeeping
belong to :class:`~tooti.gateway.attempt.NodeAttempt`. Streams are passed on as they arrive, and the
events of every frame already in hand go out in one write (one ASGI send, one socket write) instead
of one write per event. A failure after the first chunk cannot fail over any more, so it ends the
stream with an explicit error event, ``data: {"error": {...}}``, and *no* ``data: [DONE]``: OpenAI's
SDKs raise on that event, and a client that only watches for ``[DONE]`` sees an incomplete stream
instead of a silently short one.

A Responses API stream (``/v1/responses``) is written as OpenAI writes it: ``event:`` lines, no
``[DONE]``, usage in its final event, and an ``error`` event after a failure.

Usage: the node is always asked for usage (see :func:`tooti.gateway.body.upstream_request`) and
reports it in a usage frame. The relay strips usage from chunks and, when the client asked for it
(``stream_options.include_usage``), sends it as the last chunk; a whole answer gets it as ``usage``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from tooti.errors import BackendError, MalformedResponse, UpstreamError
from tooti.gateway.api_errors import error_body, from_backend_error
from tooti.gateway.responses_api import ResponsesEventWriter
from tooti.wire.infer import ChunkFrame, Done, ResultFrame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.gateway.attempt import NodeAttempt
    from tooti.gateway.body import ParsedBody
    from tooti.gateway.context import RequestContext
    from tooti.wire.infer import ResponseFrame, UsageFrame

__all__ = ["collect_result", "sse_events"]

log = logging.getLogger(__name__)

DONE_EVENT = b"data: [DONE]\n\n"


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + msgspec.json.encode(data) + b"\n\n"


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


class _ClientView:
    """Turns frames into the client's SSE events; remembers the chunk identity for the usage chunk.

    A Responses API stream is written as OpenAI writes it (``event:`` lines, no ``[DONE]``, usage in
    its final event) by :class:`~tooti.gateway.responses_api.ResponsesEventWriter`.
    """

    __slots__ = ("kind", "responses", "template")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.template: dict[str, Any] = {}
        self.responses = ResponsesEventWriter() if kind == "responses" else None

    def end(self, include_usage: bool, usage: UsageFrame | None) -> list[bytes]:
        """The events after the last frame: the usage chunk when asked for, then ``[DONE]``."""
        if self.responses is not None:
            return []
        out = []
        if include_usage and usage is not None:
            out.append(_event({**self.template, "choices": [], "usage": usage.as_openai()}))
        out.append(DONE_EVENT)
        return out

    def error(self, message: str, error_type: str, code: str | None) -> bytes:
        """The event that ends a broken stream."""
        if self.responses is not None:
            return self.responses.error(message, error_type, code)
        return _event(error_body(message, error_type, code=code))

    def events(self, frames: list[ResponseFrame], out: list[bytes]) -> bool:
        """Append the events of ``frames`` to ``out``; ``True`` when the answer is complete (Done)."""
        for frame in frames:
            if self.responses is not None and isinstance(frame, ChunkFrame):
                out.append(self.responses.encode(frame.data))
            elif isinstance(frame, ChunkFrame | ResultFrame):
                data = frame.data if isinstance(frame, ChunkFrame) else _result_as_chunk(self.kind, frame.data)
                if not self.template:
                    self.template = {k: data[k] for k in ("id", "object", "created", "model") if k in data}
                if "usage" in data:  # usage reaches the client only from the usage frame, once
                    data = {k: v for k, v in data.items() if k != "usage"}
                    if not data.get("choices"):
                        continue
                out.append(_event(data))
            elif isinstance(frame, Done):
                return True
        return False


async def sse_events(attempt: NodeAttempt, parsed: ParsedBody, ctx: RequestContext) -> AsyncIterator[bytes]:
    """Yield the SSE byte stream of a committed answer, ending in ``[DONE]`` or an error event."""
    view = _ClientView(parsed.kind)
    out: list[bytes] = []
    failure: BackendError | None = None
    try:
        frames = attempt.take_held()
        while not view.events(frames, out):
            if out:
                yield b"".join(out)
                out.clear()
            frames = await attempt.more()
        out += view.end(parsed.include_usage, attempt.usage)
        attempt.succeed()
    except BackendError as exc:
        failure = exc
    except Exception as exc:
        log.warning("stream %s broke: %s", ctx.request_id, type(exc).__name__, exc_info=exc)
        failure = UpstreamError(f"stream broken: {type(exc).__name__}")
    finally:
        if failure is not None:
            attempt.fail(failure)
        await attempt.release()
    if failure is not None:
        attempt.gw.metrics.stream_errors.labels(model=parsed.model).inc()
        log.warning("stream %s from %s ended by %s", ctx.request_id, attempt.peer_id, type(failure).__name__)
        api = from_backend_error(failure)
        out.append(view.error(f"the node failed mid-stream: {api.message}", api.error_type, api.code))
    yield b"".join(out)


async def collect_result(attempt: NodeAttempt) -> dict[str, Any]:
    """Read a whole (non-streamed) answer: the result frame, then usage and Done."""
    result: dict[str, Any] | None = None
    try:
        frames = attempt.take_held()
        while True:
            for frame in frames:
                if isinstance(frame, ResultFrame) and result is None:
                    result = dict(frame.data)
                elif isinstance(frame, ChunkFrame | ResultFrame):
                    raise MalformedResponse(f"expected one whole answer, got a {type(frame).__name__}")
            if isinstance(frames[-1], Done):
                break
            frames = await attempt.more()
        if result is None:
            raise MalformedResponse("the node ended the answer without a result")
        kind, usage = attempt.request.kind, attempt.usage
        if usage is not None and kind != "responses":  # a response keeps its own usage
            result["usage"] = usage.as_openai_embeddings() if kind == "embeddings" else usage.as_openai()
        attempt.succeed()
    except BackendError as exc:
        attempt.fail(exc)
        raise from_backend_error(exc) from None
    finally:
        await attempt.release()
    return result
