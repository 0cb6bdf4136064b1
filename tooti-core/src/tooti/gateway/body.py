"""Reading and checking OpenAI request bodies without losing any field.

The body is decoded as a plain JSON object so every parameter, including ones tooti has never heard
of, reaches the node untouched. Checked: what routing needs (``model``, the prompt field,
``stream``), the bounds every body must keep (:mod:`tooti.gateway.json_limits`), the shape of chat
``tools`` (:mod:`tooti.gateway.tool_checks`) and what a stateless gateway refuses on
``/v1/responses`` (:mod:`tooti.gateway.responses_api`); each failure is a 400 naming the field.
Only the ``tooti`` preferences object is removed.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tooti.gateway.api_errors import ApiError
from tooti.gateway.json_limits import decode_object
from tooti.gateway.responses_api import check_responses_body
from tooti.gateway.tool_checks import check_response_tools, check_tools
from tooti.wire.infer import InferRequest, RequestKind

__all__ = ["ParsedBody", "parse_body", "upstream_request"]

_PROMPT_FIELD: dict[RequestKind, str] = {
    "chat": "messages",
    "completion": "prompt",
    "embeddings": "input",
    "responses": "input",
}
_STREAMED_ON_THE_WIRE: frozenset[RequestKind] = frozenset({"chat", "completion", "responses"})


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
        raise ApiError(400, "'messages' must be a non-empty array", param="messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ApiError(400, f"'messages[{i}]' must be an object", param=f"messages[{i}]")
        if not isinstance(m.get("role"), str):
            raise ApiError(400, f"'messages[{i}].role' must be a string", param=f"messages[{i}].role")


def _check_prompt(kind: RequestKind, value: Any) -> None:
    field = _PROMPT_FIELD[kind]
    if kind == "chat":
        _check_messages(value)
    elif kind == "responses":
        return  # checked with the rest of a Responses body (tooti.gateway.responses_api)
    elif value is None or not isinstance(value, str | list) or (isinstance(value, list) and not value):
        raise ApiError(400, f"'{field}' must be a string or a non-empty array", param=field)


def _include_usage(data: dict[str, Any], stream: bool) -> bool:
    opts = data.get("stream_options")
    if opts is None:
        return False
    if not isinstance(opts, dict):
        raise ApiError(400, "'stream_options' must be an object", param="stream_options")
    usage = opts.get("include_usage", False)
    if not isinstance(usage, bool):
        raise ApiError(400, "'stream_options.include_usage' must be a boolean", param="stream_options.include_usage")
    return stream and usage


def parse_body(raw: bytes, kind: RequestKind) -> ParsedBody:
    """Decode and check ``raw``; raise :class:`ApiError` (400) naming the first bad field."""
    data = decode_object(raw)  # bounded: depth, 64-bit integers, string and array sizes
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ApiError(400, "'model' is required and must be a non-empty string", param="model")
    _check_prompt(kind, data.get(_PROMPT_FIELD[kind]))
    if kind == "responses":
        check_responses_body(data)
        check_response_tools(data.get("tools"))
    elif kind == "chat":
        check_tools(data.get("tools"))
    stream = data.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be a boolean", param="stream")
    if stream and kind == "embeddings":
        raise ApiError(400, "embeddings cannot be streamed", param="stream")
    include_usage = _include_usage(data, stream)
    prefs = data.pop("tooti", None)
    if prefs is not None and not isinstance(prefs, dict):
        raise ApiError(400, "'tooti' must be an object of routing preferences", param="tooti")
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
