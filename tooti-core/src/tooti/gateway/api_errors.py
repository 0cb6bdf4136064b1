"""OpenAI-shaped errors: one exception type for the gateway and the handlers that render every error.

Every failure a client can see leaves as ``{"error": {"message", "type", "param", "code"}}`` with a
status that tells 4xx from 5xx; ``type`` follows OpenAI's names so SDKs map it to their exceptions.

A model server's refusal reaches the client in OpenAI's codes and in the gateway's words, written
here from the refusal's typed detail (:func:`from_backend_error`): ``context_length_exceeded`` with
both token counts, ``invalid_value`` / ``unsupported_parameter`` with ``param``. Clients react to
those codes (an agent compacts its history on ``context_length_exceeded``); they never see the
node's or the model server's text.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from tooti.errors import BackendBadRequest, BackendError, ContextLengthExceeded

__all__ = ["ApiError", "context_length_message", "error_body", "exception_handlers", "from_backend_error"]

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "upstream_error",
    503: "service_unavailable",
    504: "timeout",
}


class ApiError(Exception):
    """An error the gateway answers with, already in OpenAI's terms.

    Args:
        status: HTTP status code.
        message: human-readable reason; never contains prompt or completion text.
        param: the request field at fault, when one is.
        code: a short machine-readable code (e.g. ``"model_not_found"``).
        error_type: OpenAI ``error.type``; derived from ``status`` when omitted.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        error_type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.error_type = error_type or _TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        """The JSON error object."""
        return error_body(self.message, self.error_type, param=self.param, code=self.code)


def error_body(message: str, error_type: str, *, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    """OpenAI's error envelope."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def context_length_message(prompt_tokens: int | None, context_length: int | None, *, estimated: bool = False) -> str:
    """The words for ``context_length_exceeded``, in OpenAI's sentence shape (some clients match it).

    ``estimated``: ``prompt_tokens`` is the gateway's estimate of the prompt plus ``max_tokens``, not
    a model server's count of the prompt.
    """
    need = None
    if prompt_tokens is not None:
        need = f"{prompt_tokens} tokens"
        need = f"an estimated {need} (prompt and max_tokens)" if estimated else need
    if context_length and need:
        lead = f"This model's maximum context length is {context_length} tokens, but the request has {need}"
    elif context_length:
        lead = f"This model's maximum context length is {context_length} tokens, and the request does not fit in it"
    elif need:
        lead = f"The request has {need}, more than the model's maximum context length"
    else:
        lead = "The request is longer than the model's maximum context length"
    return f"{lead}. Reduce the length of the messages or prompt, or max_tokens."


_REFUSAL_TEXT = {
    "invalid_value": "the model server refused the value of '{param}'",
    "unsupported_parameter": "the model server does not support '{param}'",
}


def _refusal(exc: BackendBadRequest) -> ApiError:
    status = exc.client_status()
    if isinstance(exc, ContextLengthExceeded):
        message = context_length_message(exc.prompt_tokens, exc.context_length)
        return ApiError(status, message, param=exc.param, code="context_length_exceeded")
    if exc.reason == "unsupported_endpoint":
        return ApiError(status, "the model server of the chosen node does not support this endpoint", code=exc.reason)
    text = _REFUSAL_TEXT.get(exc.reason or "")
    if text is not None and exc.param is not None:
        return ApiError(status, text.format(param=exc.param), param=exc.param, code=exc.reason)
    return ApiError(status, exc.message, param=exc.param)


def from_backend_error(exc: BackendError) -> ApiError:
    """Translate a node-side failure into the client's status, error type and code.

    ``exc.message`` is already the gateway's text for errors that came from a node
    (:func:`tooti.trust.frame_check.node_error`); refusals get a message written from their detail.
    """
    if isinstance(exc, BackendBadRequest):
        return _refusal(exc)
    code = exc.error_type if exc.error_type != "invalid_request_error" else None
    return ApiError(exc.client_status(), exc.message, code=code, error_type=exc.error_type)


def _render(err: ApiError) -> Response[dict[str, Any]]:
    return Response(err.body(), status_code=err.status, media_type=MediaType.JSON, headers=err.headers)


def _api_error(_: Request[Any, Any, Any], exc: ApiError) -> Response[dict[str, Any]]:
    return _render(exc)


def _backend_error(_: Request[Any, Any, Any], exc: BackendError) -> Response[dict[str, Any]]:
    return _render(from_backend_error(exc))


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[dict[str, Any]]:
    return _render(ApiError(400, str(exc.detail)))


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    headers = dict(exc.headers or {})
    return _render(ApiError(exc.status_code, str(exc.detail), headers=headers))


def _unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    log.error("unhandled error on %s %s: %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
    return _render(ApiError(500, "internal gateway error", code="internal_error"))


def exception_handlers() -> dict[type[Exception] | int, Any]:
    """Handlers that render every exception in OpenAI's shape."""
    return {
        ApiError: _api_error,
        BackendError: _backend_error,
        ValidationException: _validation,
        HTTPException: _http,
        Exception: _unexpected,
    }
