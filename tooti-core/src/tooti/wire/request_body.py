"""The request a node is sent, read from an OpenAI body: one builder for user traffic and canaries.

The gateway's request path and the canary prober (:mod:`tooti.trust.prober`) both start from an
OpenAI JSON object and must put the same request on the wire, or a node could tell a canary from a
user by its shape. So both read the body here (:func:`read_body`: what routing needs and the
``tooti`` preferences object, removed) and build the node's request here
(:func:`upstream_request`). The body is kept as a plain JSON object, so every parameter, including
ones tooti has never heard of, reaches the node untouched.

This module sits below the gateway and trust layers and raises its own :class:`InvalidBody`; the
gateway's HTTP edge (:mod:`tooti.gateway.body`) adds the bounds every client body must keep and
turns the error into a 400 naming the field.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tooti.wire.infer import InferRequest, RequestKind

__all__ = ["PROMPT_FIELD", "InvalidBody", "ParsedBody", "read_body", "upstream_request"]

PROMPT_FIELD: dict[RequestKind, str] = {
    "chat": "messages",
    "completion": "prompt",
    "embeddings": "input",
    "responses": "input",
}
"""The body field that carries the prompt, per request kind."""
_STREAMED_ON_THE_WIRE: frozenset[RequestKind] = frozenset({"chat", "completion", "responses"})


class InvalidBody(ValueError):
    """A body the node must not be sent: ``message`` says why, ``param`` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ParsedBody(msgspec.Struct, kw_only=True, frozen=True):
    """A checked request: the body to forward and what the gateway reads from it."""

    kind: RequestKind
    model: str
    body: dict[str, Any]
    """The client's JSON minus ``tooti``."""
    stream: bool
    include_usage: bool
    preferences: dict[str, Any] | None
    """The client's ``tooti`` object, if any (parsed by :mod:`tooti.gateway.prefs`)."""


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidBody("'messages' must be a non-empty array", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InvalidBody(f"'messages[{i}]' must be an object", f"messages[{i}]")
        if not isinstance(m.get("role"), str):
            raise InvalidBody(f"'messages[{i}].role' must be a string", f"messages[{i}].role")


def _check_prompt(kind: RequestKind, value: Any) -> None:
    field = PROMPT_FIELD[kind]
    if kind == "chat":
        _check_messages(value)
    elif kind == "responses":
        return  # checked with the rest of a Responses body (tooti.gateway.responses_api)
    elif value is None or not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise InvalidBody(f"'{field}' must be a string or a non-empty array", field)


def _include_usage(data: dict[str, Any], stream: bool) -> bool:
    opts = data.get("stream_options")
    if opts is None:
        return False
    if not isinstance(opts, dict):
        raise InvalidBody("'stream_options' must be an object", "stream_options")
    usage = opts.get("include_usage", False)
    if not isinstance(usage, bool):
        raise InvalidBody("'stream_options.include_usage' must be a boolean", "stream_options.include_usage")
    return stream and usage


def read_body(data: dict[str, Any], kind: RequestKind) -> ParsedBody:
    """Read a decoded OpenAI body; ``tooti`` is taken out of ``data``.

    Raises:
        InvalidBody: the first field that is missing or of the wrong type.
    """
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidBody("'model' is required and must be a non-empty string", "model")
    _check_prompt(kind, data.get(PROMPT_FIELD[kind]))
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise InvalidBody("'stream' must be a boolean", "stream")
    if stream and kind == "embeddings":
        raise InvalidBody("embeddings cannot be streamed", "stream")
    include_usage = _include_usage(data, stream)
    prefs = data.pop("tooti", None)
    if prefs is not None and not isinstance(prefs, dict):
        raise InvalidBody("'tooti' must be an object of routing preferences", "tooti")
    return ParsedBody(kind=kind, model=model, body=data, stream=stream, include_usage=include_usage, preferences=prefs)


def upstream_request(
    parsed: ParsedBody, *, request_id: str, deadline_ms: int, want_receipt: bool = False
) -> InferRequest:
    """The request sent to a node: decided here, once, for every attempt.

    Chat, legacy completions and Responses stream on the wire, token by token; embeddings never
    stream. Streamed chat and completions always ask for usage (``stream_options.include_usage``)
    so the gateway can count tokens; the node sends usage as a usage frame, and
    :mod:`tooti.gateway.relay` shows it to the client only when the client asked. A Responses stream
    carries its usage in its final event.
    """
    streams = parsed.stream and parsed.kind in _STREAMED_ON_THE_WIRE
    body = parsed.body
    if parsed.stream and not streams:
        body = {**body, "stream": False}
    elif streams and parsed.kind != "responses":
        options = dict(body.get("stream_options") or {})
        options["include_usage"] = True
        body = {**body, "stream_options": options}
    return InferRequest(
        request_id=request_id,
        model=parsed.model,
        kind=parsed.kind,
        stream=streams,
        body=body,
        deadline_ms=deadline_ms,
        want_receipt=want_receipt,
    )
