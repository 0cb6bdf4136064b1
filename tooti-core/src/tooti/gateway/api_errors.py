"""OpenAI-shaped errors: one exception type for the gateway and the handlers that render every error.

Every failure a client can see leaves as ``{"error": {"message", "type", "param", "code"}}`` with a
status that tells 4xx from 5xx; ``type`` follows OpenAI's names so SDKs map it to their exceptions.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException

from tooti.errors import BackendError

__all__ = ["ApiError", "error_body", "exception_handlers", "from_backend_error"]

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


def from_backend_error(exc: BackendError) -> ApiError:
    """Translate a node-side failure into the client's status and error type."""
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
