"""Mapping between :mod:`tooti.errors` backend errors and :class:`~tooti.wire.infer.ErrorFrame` codes.

The node turns a failure into a frame; the gateway turns the frame back into the same error class, so
failover and HTTP status decisions are made by type on both sides of the wire.
"""

from __future__ import annotations

from tooti.errors import (
    BackendBadRequest,
    BackendError,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    MalformedResponse,
    ModelNotFound,
    UpstreamError,
    client_status,
)
from tooti.wire.infer import ErrorCode, ErrorFrame

__all__ = ["NodeUnauthorized", "error_from_frame", "error_to_frame", "frame_code"]

MAX_ERROR_MESSAGE = 512
"""Error texts crossing the wire are truncated: they may quote upstream bodies."""


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


def error_to_frame(error: BackendError) -> ErrorFrame:
    """Build the frame a node sends for ``error``."""
    code = frame_code(error)
    status = error.client_status() if code == "bad_request" else None
    return ErrorFrame(code=code, message=error.message[:MAX_ERROR_MESSAGE], status=status)


def error_from_frame(frame: ErrorFrame) -> BackendError:
    """Rebuild the error a node reported, as the matching :class:`BackendError` subclass."""
    cls = _CLASSES.get(frame.code, UpstreamError)
    status = client_status(frame.status) if frame.code == "bad_request" and frame.status is not None else None
    return cls(frame.message[:MAX_ERROR_MESSAGE], status_code=status)
