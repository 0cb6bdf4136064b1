"""Map HTTP failures of a model server to :mod:`tooti.errors`, the same way for every dialect.

Servers wrap errors differently: OpenAI-compatible servers (llama.cpp, vLLM) send
``{"error": {"message", "type", "code", "param"}}``, Ollama sends ``{"error": "text"}``, FastAPI
routes send ``{"detail": ...}``. :func:`error_message` reads all three; :func:`error_for_status`
picks the error class from the status and, for 404 and 503, from what the message says.
"""

from __future__ import annotations

from typing import Any

import httpx
import msgspec

from tooti.errors import (
    BackendBadRequest,
    BackendError,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    MalformedResponse,
    ModelNotFound,
    UpstreamError,
)

__all__ = ["error_for_exception", "error_for_payload", "error_for_status", "error_message"]

_MAX_MESSAGE = 500
_BUSY_WORDS = ("busy", "overload", "capacity", "queue", "too many", "rate limit")


def error_message(payload: Any) -> str:
    """The human message inside an error body of any known shape (or the body itself)."""
    if isinstance(payload, dict):
        inner = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(inner, dict):
            return error_message(inner)
        if inner is not None:
            return str(inner)[:_MAX_MESSAGE]
    if isinstance(payload, list) and payload:
        return error_message(payload[0])
    return str(payload)[:_MAX_MESSAGE]


def _decode(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body.decode(errors="replace").strip()


def _about_model(payload: Any, message: str) -> bool:
    inner = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(inner, dict) and (inner.get("param") == "model" or inner.get("code") == "model_not_found"):
        return True
    return "model" in message.lower()


def error_for_status(status: int, body: bytes, *, server: str = "model server") -> BackendError:
    """The error for a non-2xx answer with raw ``body``."""
    payload = _decode(body)
    message = error_message(payload) or httpx.codes.get_reason_phrase(status)
    text = f"{server} answered {status}: {message}"
    return _classify(status, payload, message)(text, status_code=status)


def error_for_payload(payload: Any, *, server: str = "model server") -> BackendError:
    """The error for an error object sent inside a stream (an SSE event or NDJSON line)."""
    inner = payload.get("error") if isinstance(payload, dict) else None
    code = inner.get("code") if isinstance(inner, dict) else None
    status = code if isinstance(code, int) and 400 <= code < 600 else 500
    message = error_message(payload)
    return _classify(status, payload, message)(f"{server} failed mid-stream: {message}", status_code=status)


def _classify(status: int, payload: Any, message: str) -> type[BackendError]:
    if status == 404:
        # Not about the model: the server lacks the endpoint (e.g. embeddings), the client's mistake.
        return ModelNotFound if _about_model(payload, message) else BackendBadRequest
    if status in (408, 504):
        return BackendTimeout
    if status == 429:
        return BackendOverloaded
    if status == 503:
        busy = any(word in message.lower() for word in _BUSY_WORDS)
        return BackendOverloaded if busy else UpstreamError
    if status in (401, 403):
        return UpstreamError  # the node's credentials for its own server are wrong: not the client's fault
    if 400 <= status < 500 or status == 501:  # 501: the server does not implement what was asked
        return BackendBadRequest
    return UpstreamError


def error_for_exception(exc: httpx.HTTPError, *, server: str = "model server", streaming: bool = False) -> BackendError:
    """The error for an exception httpx raised while talking to the server.

    ``streaming`` says the response had started: a connection lost then means a truncated answer
    (:class:`MalformedResponse`), never a silently short one.
    """
    if isinstance(exc, httpx.TimeoutException):
        return BackendTimeout(f"{server} timed out ({type(exc).__name__})")
    if isinstance(exc, (httpx.ConnectError, httpx.UnsupportedProtocol)):
        return BackendUnavailable(f"{server} unreachable: {exc}")
    if streaming or isinstance(exc, (httpx.RemoteProtocolError, httpx.DecodingError)):
        return MalformedResponse(f"{server} response cut or corrupt: {type(exc).__name__}: {exc}")
    return BackendUnavailable(f"{server} connection failed: {type(exc).__name__}: {exc}")
