"""What the client sees of a node's answer: one JSON object, or Server-Sent Events, written to ASGI ``send``.

The two client views here are the :class:`~tooti.wire.frame_sink.FrameSink` a user request's node
attempt hands its frames to (:class:`~tooti.gateway.attempt.NodeAttempt`); reading the node,
timeouts and bookkeeping are the attempt's, failover and settlement the exchange's
(:mod:`tooti.gateway.exchange`). A view decides the client's view and nothing else.

Streams are passed on as they arrive, and the events of every frame already in hand go out in one
write (one ASGI send, one socket write) instead of one write per event; the response starts with
the first substantive frame (the commit point: no failover after it). A failure after that cannot
fail over any more, so it ends the stream with an explicit error event, ``data: {"error": {...}}``,
and *no* ``data: [DONE]``: OpenAI's SDKs raise on that event, and a client that only watches for
``[DONE]`` sees an incomplete stream instead of a silently short one.

A Responses API stream (``/v1/responses``) is written as OpenAI writes it: ``event:`` lines, no
``[DONE]``, usage in its final event, and an ``error`` event after a failure.

Usage: the node is always asked for usage (see :func:`tooti.wire.request_body.upstream_request`) and
reports it in a usage frame. The relay strips usage from chunks and, when the client asked for it
(``stream_options.include_usage``), sends it as the last chunk; a whole answer gets it as ``usage``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import msgspec

from tooti.errors import MalformedResponse
from tooti.gateway.api_errors import error_body, from_backend_error
from tooti.gateway.responses_api import ResponsesEventWriter
from tooti.wire.infer import ChunkFrame, Done, ResultFrame, UsageFrame

if TYPE_CHECKING:
    from litestar.types import Send

    from tooti.errors import BackendError
    from tooti.gateway.metrics import GatewayMetrics
    from tooti.wire.infer import ResponseFrame
    from tooti.wire.request_body import ParsedBody

__all__ = ["DONE_EVENT", "StreamedAnswer", "WholeAnswer", "client_view"]

log = logging.getLogger(__name__)
content_log = logging.getLogger("tooti.gateway.content")

DONE_EVENT = b"data: [DONE]\n\n"
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


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


class _EventWriter:
    """Turns frames into the client's SSE events; remembers the chunk identity for the usage chunk.

    A Responses API stream is written as OpenAI writes it (``event:`` lines, no ``[DONE]``, usage in
    its final event) by :class:`~tooti.gateway.responses_api.ResponsesEventWriter`.
    """

    __slots__ = ("kind", "responses", "template", "usage")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.template: dict[str, Any] = {}
        self.responses = ResponsesEventWriter() if kind == "responses" else None
        self.usage: UsageFrame | None = None

    def end(self, include_usage: bool) -> list[bytes]:
        """The events after the last frame: the usage chunk when asked for, then ``[DONE]``."""
        if self.responses is not None:
            return []
        out = []
        if include_usage and self.usage is not None:
            out.append(_event({**self.template, "choices": [], "usage": self.usage.as_openai()}))
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
            elif isinstance(frame, UsageFrame):
                self.usage = frame
            elif isinstance(frame, Done):
                return True
        return False


class StreamedAnswer:
    """The client's Server-Sent Events of one streamed answer, written straight to ASGI ``send``.

    Args:
        parsed: the client's request (kind, ``include_usage``).
        send: the ASGI send of the client's connection.
        request_id: for the log line of a broken stream.
        metrics: ``stream_errors`` counts streams ended by an error event.
    """

    __slots__ = ("_metrics", "_parsed", "_request_id", "_send", "_writer", "started")

    def __init__(self, parsed: ParsedBody, send: Send, request_id: str, metrics: GatewayMetrics) -> None:
        self._parsed = parsed
        self._send = send
        self._request_id = request_id
        self._metrics = metrics
        self._writer = _EventWriter(parsed.kind)
        self.started = False
        """Whether the response has started (after it, an error can only be an error event)."""

    async def take(self, frames: list[ResponseFrame]) -> bool:
        """Write the events of ``frames`` in one send; the first call starts the response."""
        out: list[bytes] = []
        done = self._writer.events(frames, out)
        if done:
            out += self._writer.end(self._parsed.include_usage)
        if not self.started:
            self.started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": _SSE_HEADERS})
        if out or done:
            await self._send({"type": "http.response.body", "body": b"".join(out), "more_body": not done})
        return done

    async def broken(self, error: BackendError) -> None:
        """End the stream with an error event (and no ``[DONE]``)."""
        self._metrics.stream_errors.labels(model=self._parsed.model).inc()
        log.warning("stream %s ended by %s", self._request_id, type(error).__name__)
        api = from_backend_error(error)
        event = self._writer.error(f"the node failed mid-stream: {api.message}", api.error_type, api.code)
        await self._send({"type": "http.response.body", "body": event, "more_body": False})


class WholeAnswer:
    """The client's one JSON object of a whole (non-streamed) answer: the result frame, with usage.

    Sent once ``Done`` arrives. A failure before that leaves the response unstarted; the exchange
    answers it with the error's status.

    Args:
        kind: the request kind (embeddings usage has its own shape; a response keeps its own).
        send: the ASGI send of the client's connection.
        request_id: for the answer's log line (``gateway.log_content``).
        log_content: whether answers are logged.
    """

    __slots__ = ("_kind", "_log_content", "_request_id", "_result", "_send", "_usage", "started")

    def __init__(self, kind: str, send: Send, request_id: str, *, log_content: bool) -> None:
        self._kind = kind
        self._send = send
        self._request_id = request_id
        self._log_content = log_content
        self._result: dict[str, Any] | None = None
        self._usage: UsageFrame | None = None
        self.started = False

    async def take(self, frames: list[ResponseFrame]) -> bool:
        """Keep the result and usage; on ``Done``, send the answer."""
        for frame in frames:
            if isinstance(frame, ResultFrame) and self._result is None:
                self._result = dict(frame.data)
            elif isinstance(frame, ChunkFrame | ResultFrame):
                raise MalformedResponse(f"expected one whole answer, got a {type(frame).__name__}")
            elif isinstance(frame, UsageFrame):
                self._usage = frame
            elif isinstance(frame, Done):
                await self._finish()
                return True
        return False

    async def _finish(self) -> None:
        result, usage = self._result, self._usage
        if result is None:
            raise MalformedResponse("the node ended the answer without a result")
        if usage is not None and self._kind != "responses":  # a response keeps its own usage
            result["usage"] = usage.as_openai_embeddings() if self._kind == "embeddings" else usage.as_openai()
        if self._log_content:
            content_log.info("%s answer: %s", self._request_id, result)
        body = msgspec.json.encode(result)
        self.started = True
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await self._send({"type": "http.response.start", "status": 200, "headers": headers})
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def broken(self, error: BackendError) -> None:
        """Nothing was sent: the exchange answers with the error's status."""


def client_view(
    parsed: ParsedBody, send: Send, request_id: str, metrics: GatewayMetrics, *, log_content: bool
) -> StreamedAnswer | WholeAnswer:
    """The view of ``parsed``'s answer its client asked for."""
    if parsed.stream:
        return StreamedAnswer(parsed, send, request_id, metrics)
    return WholeAnswer(parsed.kind, send, request_id, log_content=log_content)
