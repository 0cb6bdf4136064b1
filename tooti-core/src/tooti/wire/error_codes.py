"""Mapping between :mod:`tooti.errors` backend errors and :class:`~tooti.wire.infer.ErrorFrame` codes.

The node turns a failure into a frame; the gateway turns the frame back into the same error class, so
failover and HTTP status decisions are made by type on both sides of the wire. A refusal
(``bad_request``) also carries its typed detail: the reason (:data:`~tooti.wire.infer.ErrorReason`),
the field at fault and, for ``context_length_exceeded``, the two token counts. Both directions bound
them here, once: a node only sends values its peers can decode, and a gateway rebuilds an error only
from values it has checked (the frame may come from an in-process node, which no decoder checked).
"""

from __future__ import annotations

import re
from typing import get_args

from tooti.errors import (
    MAX_ERROR_MESSAGE,
    BackendBadRequest,
    BackendError,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    ContextLengthExceeded,
    MalformedResponse,
    ModelNotFound,
    UpstreamError,
    client_status,
)
from tooti.wire.infer import PARAM_PATTERN, ErrorCode, ErrorFrame, ErrorReason

__all__ = [
    "MAX_ERROR_MESSAGE",
    "MAX_TOKEN_COUNT",
    "REASONS",
    "NodeUnauthorized",
    "error_from_frame",
    "error_to_frame",
    "frame_code",
]

MAX_TOKEN_COUNT = 100_000_000
"""More tokens than any context window holds: a count above it is a lie, not a big request."""
REASONS: frozenset[str] = frozenset(get_args(ErrorReason))
_PARAM = re.compile(PARAM_PATTERN)


class NodeUnauthorized(BackendUnavailable):
    """The node refused this gateway (``node.allowed_gateway_peers``); another node may accept it."""


# Most specific first: MalformedResponse and friends are checked before the BackendError base.
_CODES: tuple[tuple[type[BackendError], ErrorCode], ...] = (
    (NodeUnauthorized, "unauthorized"),
    (BackendTimeout, "timeout"),
    (ModelNotFound, "model_not_found"),
    (BackendBadRequest, "bad_request"),
    (BackendOverloaded, "overloaded"),
    (MalformedResponse, "malformed"),
    (UpstreamError, "upstream"),
    (BackendUnavailable, "unavailable"),
)

_CLASSES: dict[ErrorCode, type[BackendError]] = {code: cls for cls, code in _CODES}


def frame_code(error: BackendError) -> ErrorCode:
    """Return the wire code for ``error`` (``upstream`` for an unknown subclass)."""
    for cls, code in _CODES:
        if isinstance(error, cls):
            return code
    return "upstream"


def _tokens(n: object) -> int | None:
    return n if isinstance(n, int) and not isinstance(n, bool) and 0 <= n <= MAX_TOKEN_COUNT else None


def _param(param: object) -> str | None:
    return param if isinstance(param, str) and len(param) <= 256 and _PARAM.match(param) else None


def error_to_frame(error: BackendError) -> ErrorFrame:
    """Build the frame a node sends for ``error``; detail that would not decode on a gateway is left out."""
    code = frame_code(error)
    frame = ErrorFrame(code=code, message=error.message[:MAX_ERROR_MESSAGE])
    if not isinstance(error, BackendBadRequest):
        return frame
    frame.status = error.client_status()
    frame.reason = error.reason if error.reason in REASONS else None
    frame.param = _param(error.param)
    if isinstance(error, ContextLengthExceeded):
        frame.prompt_tokens = _tokens(error.prompt_tokens)
        frame.context_length = _tokens(error.context_length)
    return frame


def error_from_frame(frame: ErrorFrame) -> BackendError:
    """Rebuild the error a node reported, as the matching :class:`BackendError` subclass.

    Only checked detail survives: a reason this gateway knows, a field name of the safe pattern,
    token counts in range; anything else is dropped (the error keeps its class and status).
    """
    cls = _CLASSES.get(frame.code, UpstreamError)
    message = frame.message[:MAX_ERROR_MESSAGE]
    if cls is not BackendBadRequest:
        return cls(message)
    status = client_status(frame.status) if frame.status is not None else None
    param = _param(frame.param)
    if frame.reason == "context_length_exceeded":
        return ContextLengthExceeded(
            message,
            status_code=status,
            prompt_tokens=_tokens(frame.prompt_tokens),
            context_length=_tokens(frame.context_length),
            param=param,
        )
    reason = frame.reason if frame.reason in REASONS else None
    return BackendBadRequest(message, status_code=status, reason=reason, param=param if reason else None)
