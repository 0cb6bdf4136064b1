"""Map HTTP failures of a model server to :mod:`tooti.errors`, the same way for every dialect.

Servers wrap errors differently: OpenAI-compatible servers (llama.cpp, vLLM) send
``{"error": {"message", "type", "code", "param"}}``, Ollama sends ``{"error": "text"}``, FastAPI
routes send ``{"detail": ...}``. :func:`error_message` reads all three; :func:`error_for_status`
picks the error class from the status and, for 404 and 503, from what the message says.

A refusal of the request itself is classified further, because a client can act on it only when it
knows what was wrong (an agent compacts its history on ``context_length_exceeded``, and gives up on
a "malformed request"): :func:`refusal_for` reads each dialect's way of saying that the prompt does
not fit the context window (llama.cpp's ``exceed_context_size_error`` with ``n_prompt_tokens`` and
``n_ctx``; OpenAI's ``context_length_exceeded``; vLLM's, TGI's and OpenAI's sentences) and which
parameter was refused. It yields typed values only (a class, two integers, a field name); the
node's wire encoder bounds them and the gateway writes the client's message from them, never
relaying the server's text.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import msgspec

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
)

__all__ = ["error_for_exception", "error_for_payload", "error_for_status", "error_message", "refusal_for"]

_BUSY_WORDS = ("busy", "overload", "capacity", "queue", "too many", "rate limit")
_INT = r"(\d{1,12})"

# (pattern, group of the prompt's tokens or 0, group of the context length or 0); first match wins.
_CONTEXT_SENTENCES: tuple[tuple[re.Pattern[str], int, int], ...] = (
    # llama.cpp server: "request (831 tokens) exceeds the available context size (256 tokens), ..."
    (re.compile(rf"request \({_INT} tokens\) exceeds the available context size \({_INT} tokens\)"), 1, 2),
    # llama.cpp embeddings: "input (801 tokens) is too large to process. increase the physical batch size
    # (current batch size: 256)": one input must fit one batch, the limit of this request.
    (re.compile(rf"input \({_INT} tokens\) is too large to process.*?batch size: {_INT}", re.S), 1, 2),
    # Text Generation Inference: its "must be <= 2048. Given: 2000 `inputs` tokens" sentence.
    (re.compile(rf"must be <= {_INT}\. Given: {_INT} `inputs` tokens"), 2, 1),
)
_MAX_CONTEXT = re.compile(rf"maximum (?:context|input) length (?:is|of) {_INT} tokens", re.I)
_PROMPT_COUNTS = (
    re.compile(rf"\({_INT} in the messages"),  # vLLM, OpenAI: "you requested 3000 tokens (2900 in the messages, ..."
    re.compile(rf"(?:has|have|resulted in|contains?) {_INT} (?:input |prompt )?tokens", re.I),
    re.compile(rf"requested {_INT} tokens", re.I),
)
_CONTEXT_WORDS = re.compile(
    r"context (?:length|size|window)|context_length|maximum input length|input length exceeds", re.I
)
_TOO_LONG_WORDS = re.compile(r"exceed|too (?:long|large|many)|maximum|reduce the length|greater than", re.I)

_PARAM_IN_TEXT = (
    re.compile(r"^Field '([^']{1,128})'"),  # llama.cpp: "Field 'temperature': [json.exception..."
    re.compile(r"^Expected '([^']{1,128})'"),  # llama.cpp: "Expected 'messages' to be an array"
    re.compile(r"^Unsupported param: ([A-Za-z_][\w.]{0,127})"),  # llama.cpp: "Unsupported param: tools"
    re.compile(r"^'([^']{1,128})'"),  # vLLM: "'max_tokens' or ..."
    # a leading field name, as in llama.cpp's sentence about response_format's type
    re.compile(r"^([a-z_][a-z0-9_]{1,63}) (?:must|should|is|type|value|cannot|can't)\b"),
    re.compile(r"[Pp]arameter '([^']{1,128})'"),
)
_UNSUPPORTED_WORDS = re.compile(r"unsupported|not supported|is not allowed|unknown (?:param|field)|requires", re.I)


def error_message(payload: Any) -> str:
    """The human message inside an error body of any known shape (or the body itself), capped."""
    if isinstance(payload, dict):
        inner = payload.get("error", payload.get("detail", payload.get("message")))
        if isinstance(inner, dict):
            return error_message(inner)
        if isinstance(inner, list) and inner:
            return error_message(inner[0])
        if inner is not None:
            return str(inner)[:MAX_ERROR_MESSAGE]
        msg = payload.get("msg")  # a FastAPI validation item
        if msg is not None:
            return str(msg)[:MAX_ERROR_MESSAGE]
    if isinstance(payload, list) and payload:
        return error_message(payload[0])
    return str(payload)[:MAX_ERROR_MESSAGE]


def _decode(body: bytes) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.DecodeError:
        return body[: MAX_ERROR_MESSAGE * 4].decode(errors="replace").strip()


def _inner(payload: Any) -> dict[str, Any]:
    """The error object of an envelope (``{"error": {...}}``, ``{"detail": [{...}]}``), or ``{}``."""
    if not isinstance(payload, dict):
        return {}
    inner = payload.get("error", payload.get("detail"))
    if isinstance(inner, list) and inner:
        inner = inner[0]
    return inner if isinstance(inner, dict) else payload


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _about_model(payload: Any, message: str) -> bool:
    inner = _inner(payload)
    if inner.get("param") == "model" or inner.get("code") == "model_not_found":
        return True
    return "model" in message.lower()


def _context_numbers(message: str) -> tuple[int | None, int | None] | None:
    """The prompt's tokens and the context length a sentence about a too-long request names, or ``None``."""
    for pattern, prompt_group, context_group in _CONTEXT_SENTENCES:
        found = pattern.search(message)
        if found:
            return int(found.group(prompt_group)), int(found.group(context_group))
    limit = _MAX_CONTEXT.search(message)
    if limit is None and not (_CONTEXT_WORDS.search(message) and _TOO_LONG_WORDS.search(message)):
        return None
    prompt = next((int(m.group(1)) for p in _PROMPT_COUNTS if (m := p.search(message))), None)
    return prompt, int(limit.group(1)) if limit else None


def _param(inner: dict[str, Any], message: str) -> str | None:
    """The request field the server blames: its ``param`` / FastAPI ``loc``, else the one its text names."""
    param = inner.get("param")
    loc = inner.get("loc")
    if not isinstance(param, str) and isinstance(loc, list) and loc:
        param = ".".join(str(part) for part in loc)
    if isinstance(param, str) and param:
        return param.removeprefix("body.")[:128]
    for pattern in _PARAM_IN_TEXT:
        found = pattern.search(message)
        if found:
            return found.group(1)
    return None


def refusal_for(status: int, payload: Any, message: str, text: str) -> BackendBadRequest | None:
    """The typed refusal in an error answer: the prompt does not fit, or a parameter is refused.

    ``None`` when the answer is not a refusal of the request (a 5xx other than llama.cpp's
    too-large embeddings input, a busy server, a missing model). ``text`` is the error's message
    (the node's own words, which the gateway logs and never shows).
    """
    inner = _inner(payload)
    kind, code = inner.get("type"), inner.get("code")
    if kind == "exceed_context_size_error":  # llama.cpp's own fields
        return ContextLengthExceeded(
            text,
            status_code=status,
            prompt_tokens=_count(inner.get("n_prompt_tokens")),
            context_length=_count(inner.get("n_ctx")),
        )
    if not 400 <= status <= 501:
        return None
    numbers = _context_numbers(message)
    if numbers is not None or code == "context_length_exceeded" or kind == "context_length_exceeded":
        prompt, limit = numbers or (None, None)
        param = inner.get("param") if isinstance(inner.get("param"), str) else None
        param = None if param == "input_tokens" else param  # vLLM's name for the count, not a request field
        return ContextLengthExceeded(
            text, status_code=400 if status >= 500 else status, prompt_tokens=prompt, context_length=limit, param=param
        )
    if status == 500 or status in (401, 403, 404, 408, 429):
        return None
    param = _param(inner, message)
    if status == 501:
        return BackendBadRequest(text, status_code=status, reason="unsupported_endpoint")
    if param is None:
        return BackendBadRequest(text, status_code=status)
    reason = "unsupported_parameter" if _UNSUPPORTED_WORDS.search(message) else "invalid_value"
    return BackendBadRequest(text, status_code=status, reason=reason, param=param)


def error_for_status(status: int, body: bytes, *, server: str = "model server") -> BackendError:
    """The error for a non-2xx answer with raw ``body``."""
    payload = _decode(body)
    message = error_message(payload) or httpx.codes.get_reason_phrase(status)
    return _classify(status, payload, message, f"{server} answered {status}: {message}")


def error_for_payload(payload: Any, *, server: str = "model server") -> BackendError:
    """The error for an error object sent inside a stream (an SSE event or NDJSON line)."""
    code = _inner(payload).get("code")
    status = code if isinstance(code, int) and not isinstance(code, bool) and 400 <= code < 600 else 500
    message = error_message(payload)
    return _classify(status, payload, message, f"{server} failed mid-stream: {message}")


def _classify(status: int, payload: Any, message: str, text: str) -> BackendError:
    refusal = refusal_for(status, payload, message, text)
    if refusal is not None:
        return refusal
    if status == 404:
        # Not about the model: the server lacks the endpoint (e.g. embeddings), the client's mistake.
        if _about_model(payload, message):
            return ModelNotFound(text, status_code=status)
        return BackendBadRequest(text, status_code=status, reason="unsupported_endpoint")
    if status in (408, 504):
        return BackendTimeout(text, status_code=status)
    if status == 429:
        return BackendOverloaded(text, status_code=status)
    if status == 503:
        busy = any(word in message.lower() for word in _BUSY_WORDS)
        return (BackendOverloaded if busy else UpstreamError)(text, status_code=status)
    if status in (401, 403):
        return UpstreamError(text, status_code=status)  # the node's credentials for its own server are wrong
    if 400 <= status < 500:
        return BackendBadRequest(text, status_code=status)
    return UpstreamError(text, status_code=status)


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
