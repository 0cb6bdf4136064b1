"""The tooti error hierarchy.

Every failure a plugin, the node or the gateway can report is one of these, so callers decide by
type: the gateway fails over on :class:`BackendError` subclasses whose ``retryable`` is true and maps
each class to one HTTP status (``http_status``) in OpenAI's error shape.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "MAX_ERROR_MESSAGE",
    "BackendBadRequest",
    "BackendError",
    "BackendOverloaded",
    "BackendTimeout",
    "BackendUnavailable",
    "ConfigError",
    "ContextLengthExceeded",
    "DuplicatePluginError",
    "MalformedResponse",
    "ModelNotFound",
    "PluginError",
    "PluginLoadError",
    "PluginNotFoundError",
    "StreamEnded",
    "TootiError",
    "UpstreamError",
]


MAX_ERROR_MESSAGE = 512
"""Longest error text kept from a model server or a node (they may quote the request): the one cap
the backends' error mapping and the wire's error frames share."""


class TootiError(Exception):
    """Base class of every error tooti raises on purpose."""


class ConfigError(TootiError):
    """A configuration file is unreadable or invalid; the message names the key path and the reason."""


class PluginError(TootiError):
    """Base class for plugin discovery and loading problems."""


class PluginNotFoundError(PluginError):
    """No installed plugin provides the requested name."""


class PluginLoadError(PluginError):
    """A plugin failed to import or to register; the message names the plugin and the cause."""


class DuplicatePluginError(PluginError):
    """Two plugins provide the same name in the same group."""


class BackendError(TootiError):
    """A model server call failed.

    Attributes:
        retryable: whether another node may succeed where this one failed (the gateway fails over).
        node_fault: whether the failure is the node's own (transport, its server's 5xx, timeouts,
            malformed answers): only those count as node failures and put a node in cooldown. A
            client's mistake, a missing model or a busy node says nothing about the node's health.
        http_status: the status the gateway answers with when this error reaches a client.
        error_type: OpenAI's ``error.type`` string for the client.
    """

    retryable: ClassVar[bool] = False
    node_fault: ClassVar[bool] = True
    http_status: ClassVar[int] = 502
    error_type: ClassVar[str] = "upstream_error"

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code

    def client_status(self) -> int:
        """The status a client gets for this error (a class may pass on the model server's own)."""
        return self.http_status


class BackendUnavailable(BackendError):
    """The model server cannot be reached (connection refused, reset, DNS, node gone)."""

    retryable = True
    http_status = 503
    error_type = "service_unavailable"


class BackendTimeout(BackendError):
    """The model server did not answer in time (connect, first token, idle gap or total)."""

    retryable = True
    http_status = 504
    error_type = "timeout"


class ModelNotFound(BackendError):
    """The model server does not serve the requested model."""

    retryable = True  # another node may serve it
    node_fault = False
    http_status = 404
    error_type = "model_not_found"


class BackendBadRequest(BackendError):
    """The model server rejected the request itself (bad parameters, prompt too long, unsupported endpoint).

    The client gets the model server's own 4xx where it tells the client something (413 too large,
    422 unprocessable, …) and 400 otherwise: see :func:`client_status`.
    """

    node_fault = False
    http_status = 400
    error_type = "invalid_request_error"

    def __init__(
        self, message: str, *, status_code: int | None = None, reason: str | None = None, param: str | None = None
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.reason = reason
        """Why, in OpenAI's code where it has one (``invalid_value``, ``unsupported_parameter``, …)."""
        self.param = param
        """The request field at fault, when the model server named one."""

    def client_status(self) -> int:
        """The status a client gets: the model server's 4xx when it is a client-facing one, else 400."""
        return client_status(self.status_code)


class ContextLengthExceeded(BackendBadRequest):
    """The prompt does not fit the model's context window: OpenAI's ``context_length_exceeded``.

    Either count may be unknown when the model server did not say it.

    Retrying elsewhere is the router's business (it skips nodes whose advertised context is too
    small); a client that sees this code shortens its prompt (agents compact their history).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        prompt_tokens: int | None = None,
        context_length: int | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, reason="context_length_exceeded", param=param)
        self.prompt_tokens = prompt_tokens
        self.context_length = context_length

    def client_status(self) -> int:
        """Always 400, as OpenAI answers it (TGI says 422, llama.cpp's embeddings 500)."""
        return 400


_NOT_PASSED_ON = frozenset({401, 403, 404, 407, 429})
"""4xx a model server may answer that mean something else to the gateway's client: credentials and
rate limits are the node's own business, and a 404 for an endpoint the server lacks is not "no such
model" (the client's request is what it cannot serve: 400)."""


def client_status(status: int | None) -> int:
    """``status`` when it is a 4xx a client should see as is, else 400 (any value a peer sent is safe)."""
    if isinstance(status, int) and 400 <= status <= 499 and status not in _NOT_PASSED_ON:
        return status
    return 400


class BackendOverloaded(BackendError):
    """The model server is rate limiting or its queue is full (HTTP 429 or 503 with a busy reason)."""

    retryable = True  # another node may have room
    node_fault = False
    http_status = 429
    error_type = "rate_limit_exceeded"


class UpstreamError(BackendError):
    """The model server failed with a 5xx status."""

    retryable = True
    http_status = 502
    error_type = "upstream_error"


class MalformedResponse(BackendError):
    """The model server's answer could not be parsed or ended early; never a silently short answer."""

    retryable = True
    http_status = 502
    error_type = "upstream_error"


class StreamEnded(MalformedResponse):
    """A node's stream closed before the answer's end: short, but not a lie.

    An honest node that restarts or crashes mid-answer does this, so the canary prober counts it
    as inconclusive rather than a fault (a node that cuts every answer fails its users too, and
    loses reputation on each); everywhere else it is a malformed (short) answer.
    """
