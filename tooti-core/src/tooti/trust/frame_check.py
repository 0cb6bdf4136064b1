"""Every frame a node sends, checked against OpenAI's shapes before any of it reaches a client.

A node is a peer, not a component: its frames may carry msgpack ``Ext`` values (which JSON cannot
encode), ``"choices": 5``, usage of 2^63 tokens, or an error text written for the user ("your
account is suspended, log in at …"). :class:`FrameCheck` runs once per frame of one attempt and

* raises :class:`~tooti.errors.MalformedResponse` for anything that is not plain, bounded JSON in the
  shape of the request's kind, so the attempt counts as a node failure and, when nothing was sent to
  the client yet, fails over to the next node;
* replaces a node's error text by the gateway's own words for that error code; the node's text goes
  to the log only, capped and quoted, and only with ``gateway.log_content`` (it may quote the
  request: a tool schema, a prompt). Of a refusal's typed detail only what the gateway can vouch
  for is kept (:func:`node_error`): a known reason, token counts in range, and a ``param`` that is
  a request field this gateway knows of (a closed list), so a node cannot write to the client
  through it either.

The walk is linear in the frame's size (frames are already capped at 4 MiB by the wire layer) and
costs a few microseconds for a typical chunk.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from tooti.errors import BackendError, MalformedResponse
from tooti.wire.error_codes import MAX_TOKEN_COUNT, error_from_frame
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, ResultFrame, UsageFrame
from tooti.wire.receipt import ReceiptFrame

if TYPE_CHECKING:
    from collections.abc import Iterable

    from tooti.wire.infer import ErrorCode, RequestKind, ResponseFrame

__all__ = ["MAX_USAGE_TOKENS", "FrameCheck", "gateway_error_text", "gateway_frame", "node_error"]

log = logging.getLogger(__name__)

MAX_USAGE_TOKENS = MAX_TOKEN_COUNT
"""More tokens than any context window holds: a usage above this is a lie, not a big request."""
_MAX_INT = 2**53
"""Largest integer every JSON client reads exactly."""
_MAX_DEPTH = 32
_MAX_CHOICES = 128
_MAX_ID_CHARS = 256
_MAX_DETAIL_LOGGED = 200
_LEAF_TYPES = frozenset({str, bool})
"""Leaves that need no check beyond their type (ints and floats have bounds to check)."""
_USAGE_KEYS = ("prompt_tokens", "completion_tokens", "total_tokens", "input_tokens", "output_tokens")

_GATEWAY_TEXT: dict[str, str] = {
    "unavailable": "the node chosen for this request could not serve it",
    "timeout": "the node chosen for this request timed out",
    "model_not_found": "the node chosen for this request does not serve this model",
    "bad_request": "the model server rejected the request as invalid",
    "overloaded": "the nodes serving this model are busy; retry shortly",
    "upstream": "the model server failed while answering",
    "malformed": "the node sent a malformed answer",
    "unauthorized": "the node chosen for this request does not accept this gateway",
}


def gateway_error_text(code: ErrorCode | str) -> str:
    """The gateway's own words for a node error code (what a client sees instead of the node's text)."""
    return _GATEWAY_TEXT.get(code, _GATEWAY_TEXT["upstream"])


_KNOWN_PARAMS = frozenset(
    {
        # OpenAI chat, completions, embeddings and responses request fields
        "model", "messages", "prompt", "input", "instructions", "suffix", "max_tokens", "max_completion_tokens",
        "max_output_tokens", "temperature", "top_p", "n", "stop", "stream", "stream_options", "presence_penalty",
        "frequency_penalty", "logit_bias", "logprobs", "top_logprobs", "echo", "best_of", "user", "seed", "tools",
        "tool_choice", "parallel_tool_calls", "response_format", "functions", "function_call", "encoding_format",
        "dimensions", "text", "reasoning", "reasoning_effort", "modalities", "metadata", "store", "truncation",
        "include", "previous_response_id", "service_tier", "prediction", "audio", "web_search_options",
        # sampling and template fields llama.cpp and vLLM accept besides OpenAI's
        "top_k", "min_p", "typical_p", "repeat_penalty", "repeat_last_n", "mirostat", "grammar", "json_schema",
        "n_probs", "cache_prompt", "chat_template_kwargs", "add_generation_prompt", "continue_final_message",
        "min_tokens", "ignore_eos", "guided_json", "guided_regex", "guided_choice", "guided_grammar",
        "structured_outputs", "length_penalty", "repetition_penalty", "skip_special_tokens",
    }
)  # fmt: skip
"""Request fields a node's ``param`` may name: a closed list, so the field is never free text from a peer."""


def _known_param(param: str | None) -> str | None:
    if param is None:
        return None
    root = param.split(".", 1)[0].split("[", 1)[0]
    return param if root in _KNOWN_PARAMS else None


def gateway_frame(frame: ErrorFrame) -> ErrorFrame:
    """``frame`` in the gateway's words: its code, status and checked typed detail, none of its text."""
    return ErrorFrame(
        code=frame.code,
        message=gateway_error_text(frame.code),
        status=frame.status,
        reason=frame.reason,
        param=_known_param(frame.param),
        prompt_tokens=frame.prompt_tokens,
        context_length=frame.context_length,
    )


def node_error(frame: ErrorFrame) -> BackendError:
    """The error a node reported, as its :class:`BackendError` class but in the gateway's words.

    The class (hence failover and the HTTP status) follows the node's code; the text never does: a
    node's message may be aimed at users ("your account is suspended, log in at …"). What survives
    of a refusal is typed and bounded (:func:`tooti.wire.error_codes.error_from_frame` checks it);
    :mod:`tooti.gateway.api_errors` writes the client's message from it.
    """
    return error_from_frame(gateway_frame(frame))


def _bad(why: str) -> MalformedResponse:
    return MalformedResponse(f"the node sent a malformed answer ({why})")


def _plain_json(value: Any, depth: int = 0) -> None:
    """Raise unless ``value`` is JSON: str, bool, None, bounded int, finite float, list, str-keyed dict."""
    if depth > _MAX_DEPTH:
        raise _bad("nested too deeply")
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise _bad("a non-string key")
        _plain_items(value.values(), depth + 1)
    elif isinstance(value, list):
        _plain_items(value, depth + 1)
    else:
        _plain_scalar(value)


def _plain_items(items: Iterable[Any], depth: int) -> None:
    """Check a container's items; its string, boolean and null leaves inline, by exact type.

    This runs on every frame of every answer: a call per leaf was most of its cost (msgspec decodes
    to exact built-in types; anything else takes :func:`_plain_json`).
    """
    inline = depth <= _MAX_DEPTH
    for item in items:
        if inline and (item is None or type(item) in _LEAF_TYPES):
            continue
        _plain_json(item, depth)


def _plain_scalar(value: Any) -> None:
    if value is None or isinstance(value, str | bool):
        return
    if isinstance(value, int):
        if not -_MAX_INT <= value <= _MAX_INT:
            raise _bad("an integer out of range")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _bad("a non-finite number")
        return
    raise _bad(f"a value of type {type(value).__name__}")


def _short_str(data: dict[str, Any], key: str) -> None:
    value = data.get(key)
    if value is not None and (not isinstance(value, str) or len(value) > _MAX_ID_CHARS):
        raise _bad(f"'{key}' is not a short string")


def _usage(usage: Any) -> None:
    """Token counts present (chat's ``prompt_tokens``…, the Responses API's ``input_tokens``…) are bounded."""
    if usage is None:
        return
    if not isinstance(usage, dict):
        raise _bad("'usage' is not an object")
    for key in _USAGE_KEYS:
        n = usage.get(key)
        if n is None:
            continue
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_USAGE_TOKENS:
            raise _bad(f"usage.{key} is not a plausible token count")


def _text_or_none(container: dict[str, Any], key: str, where: str) -> None:
    value = container.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(f"{where}.{key} is not a string")


def _choice(choice: Any, kind: RequestKind, streamed: bool) -> None:
    if not isinstance(choice, dict):
        raise _bad("a choice is not an object")
    index = choice.get("index", 0)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < _MAX_CHOICES:
        raise _bad("a choice index is out of range")
    reason = choice.get("finish_reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 64):
        raise _bad("finish_reason is not a short string")
    if kind == "completion":
        _text_or_none(choice, "text", "choice")
        return
    part = "delta" if streamed else "message"
    message = choice.get(part)
    if message is None and streamed:
        return
    if not isinstance(message, dict):
        raise _bad(f"choice.{part} is not an object")
    _text_or_none(message, "content", part)
    _text_or_none(message, "role", part)
    _text_or_none(message, "refusal", part)
    _text_or_none(message, "reasoning_content", part)
    calls = message.get("tool_calls")
    if calls is not None and not isinstance(calls, list):
        raise _bad(f"{part}.tool_calls is not a list")


def _completion_data(data: dict[str, Any], kind: RequestKind, streamed: bool) -> None:
    _short_str(data, "id")
    _short_str(data, "model")
    _short_str(data, "object")
    choices = data.get("choices")
    if choices is None and streamed:
        choices = []
    if not isinstance(choices, list) or len(choices) > _MAX_CHOICES:
        raise _bad("'choices' is not a list")
    if not streamed and not choices:
        raise _bad("no choices")
    for choice in choices:
        _choice(choice, kind, streamed)
    _usage(data.get("usage"))


def _embeddings_data(data: dict[str, Any]) -> None:
    _short_str(data, "model")
    items = data.get("data")
    if not isinstance(items, list):
        raise _bad("embeddings 'data' is not a list")
    for item in items:
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, list | str):
            raise _bad("an embedding is neither a list nor base64 text")
        if isinstance(vector, list) and not all(isinstance(x, int | float) and not isinstance(x, bool) for x in vector):
            raise _bad("an embedding holds a non-number")
    _usage(data.get("usage"))


class FrameCheck:
    """Checks the frames of one attempt (one request to one node).

    Args:
        peer_id: the node, for the log line that keeps its error detail.
        kind: the request's kind; it decides the expected shape.
        log_detail: log a node's error text (capped); only with ``gateway.log_content``, because
            the text may quote the request.
    """

    __slots__ = ("kind", "log_detail", "peer_id")

    def __init__(self, peer_id: str, kind: RequestKind, *, log_detail: bool = False) -> None:
        self.peer_id = peer_id
        self.kind = kind
        self.log_detail = log_detail

    def __call__(self, frame: ResponseFrame) -> ResponseFrame:
        """Return ``frame`` (an :class:`ErrorFrame` with the gateway's text) or raise ``MalformedResponse``."""
        if isinstance(frame, ChunkFrame | ResultFrame):
            _plain_json(frame.data)
            if self.kind == "embeddings":
                _embeddings_data(frame.data)
            elif self.kind in ("chat", "completion"):
                _completion_data(frame.data, self.kind, streamed=isinstance(frame, ChunkFrame))
            else:  # a kind this gateway does not know the shape of: plain, bounded JSON and usage only
                _usage(frame.data.get("usage"))
            return frame
        if isinstance(frame, UsageFrame):
            for n in (frame.prompt_tokens, frame.completion_tokens, frame.total_tokens):
                if not 0 <= n <= MAX_USAGE_TOKENS:
                    raise _bad("a usage frame with an implausible token count")
            return frame
        if isinstance(frame, ErrorFrame):
            if self.log_detail:
                log.warning(
                    "node %s reported %s; its own text (not shown to clients): %r",
                    self.peer_id,
                    frame.code,
                    frame.message[:_MAX_DETAIL_LOGGED],
                )
            else:  # the text may quote the request (a tool schema, a prompt): only with log_content
                log.info("node %s reported %s (%d characters of detail)", self.peer_id, frame.code, len(frame.message))
            return gateway_frame(frame)
        if isinstance(frame, Done):
            return frame
        if isinstance(frame, ReceiptFrame):  # the signature is the metering's to check; the counts are ours
            r = frame.receipt
            if not (0 <= r.prompt_tokens <= MAX_USAGE_TOKENS and 0 <= r.completion_tokens <= MAX_USAGE_TOKENS):
                raise _bad("a receipt with an implausible token count")
            return frame
        raise _bad(f"an unknown frame {type(frame).__name__}")
