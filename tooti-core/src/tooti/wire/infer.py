"""Frames of the ``/tooti/infer/1.0.0`` stream protocol (msgspec, length-prefixed on the wire).

The gateway writes an :class:`InferRequest` and reads response frames until :class:`Done` or
:class:`ErrorFrame`; after ``Done`` it may send its next request on the same stream (see
docs/p2p.md). ``body`` is the client's OpenAI JSON passed through untouched. Frames are a tagged
union so new kinds can be added compatibly.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from tooti.wire.receipt import ReceiptFrame

__all__ = [
    "PARAM_PATTERN",
    "PROTOCOL_ID",
    "ChunkFrame",
    "Done",
    "ErrorCode",
    "ErrorFrame",
    "ErrorReason",
    "InferRequest",
    "ReceiptFrame",
    "RequestKind",
    "ResponseFrame",
    "ResultFrame",
    "UsageFrame",
    "carries_token",
    "embeddings_usage_frame",
    "is_responses_preamble",
    "usage_frame",
]

PROTOCOL_ID = "/tooti/infer/1.0.0"

RequestKind = Literal["chat", "completion", "embeddings", "responses"]
"""The endpoint a request is for: ``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings``,
``/v1/responses`` (a node that predates ``responses`` answers it with a ``bad_request`` error frame)."""
ErrorCode = Literal[
    "unavailable", "timeout", "model_not_found", "bad_request", "overloaded", "upstream", "malformed", "unauthorized"
]


class InferRequest(msgspec.Struct, kw_only=True, tag="request", tag_field="t"):
    """The gateway's request to a node."""

    request_id: str
    model: str
    kind: RequestKind = "chat"
    stream: bool = False
    body: dict[str, Any]
    deadline_ms: int = 0
    """Unix milliseconds after which the node should give up; 0 = no deadline."""
    want_receipt: bool = False
    """Ask for a signed :class:`~tooti.wire.receipt.ReceiptFrame` before ``Done`` (nodes that predate
    receipts ignore the field and send none)."""
    certificate: str | None = None
    """The gateway's membership certificate, for nodes that serve members only (``node.admission``)."""


class ChunkFrame(msgspec.Struct, kw_only=True, tag="chunk", tag_field="t"):
    """One OpenAI ``chat.completion.chunk`` (or ``text_completion`` chunk) of a streamed answer."""

    data: dict[str, Any]


class ResultFrame(msgspec.Struct, kw_only=True, tag="result", tag_field="t"):
    """The whole answer of a non-streamed request."""

    data: dict[str, Any]


_TokenCount = Annotated[int, Meta(ge=0, le=2**31)]
"""A node's token count: bounded, since it is billed (a negative count would refund a budget)."""


class UsageFrame(msgspec.Struct, kw_only=True, tag="usage", tag_field="t"):
    """Token counts of the request, sent before :class:`Done` when the backend reports them."""

    prompt_tokens: _TokenCount
    completion_tokens: _TokenCount
    total_tokens: _TokenCount
    details: dict[str, Any] | None = None
    """The backend's other usage fields (e.g. ``prompt_tokens_details``), passed to the client as given."""

    def as_openai(self) -> dict[str, Any]:
        """The OpenAI ``usage`` object."""
        usage: dict[str, Any] = dict(self.details) if self.details else {}
        usage.update(
            prompt_tokens=self.prompt_tokens, completion_tokens=self.completion_tokens, total_tokens=self.total_tokens
        )
        return usage

    def as_openai_embeddings(self) -> dict[str, Any]:
        """The ``usage`` object of an embeddings answer: input tokens only, as OpenAI writes it."""
        usage: dict[str, Any] = dict(self.details) if self.details else {}
        usage.update(prompt_tokens=self.prompt_tokens, total_tokens=self.total_tokens)
        return usage


ErrorReason = Literal["context_length_exceeded", "invalid_value", "unsupported_parameter", "unsupported_endpoint"]
"""Why a model server refused a request (``bad_request`` only), in OpenAI's codes where OpenAI has one:
the prompt does not fit the context window, a parameter's value is refused, a parameter is not
supported, the server lacks the endpoint. Decoded as a bounded string (see :data:`_Reason`) so a
newer node's reason is ignored by an older gateway instead of breaking the frame."""

_Reason = Annotated[str, Meta(pattern=r"\A[a-z_]{1,40}\Z")]
PARAM_PATTERN = r"\A[A-Za-z_][A-Za-z0-9_]{0,63}(\[[0-9]{1,6}\]|\.[A-Za-z_][A-Za-z0-9_]{0,63}){0,6}\Z"
"""A request field path such as ``temperature`` or ``messages[3].content``: no spaces, no markup.
Code that builds frames checks it too (constructing a frame does not)."""
_Param = Annotated[str, Meta(pattern=PARAM_PATTERN)]


class ErrorFrame(msgspec.Struct, kw_only=True, tag="error", tag_field="t"):
    """The request failed; ``code`` maps to a :class:`tooti.errors.BackendError` subclass.

    ``message`` is the node's own text: a gateway logs it and never shows it to a client. What a
    client may learn from a refusal travels in bounded, typed fields (``reason``, ``param``, the two
    token counts), from which the gateway writes its own message. Every field after ``message`` is
    optional on the wire: older nodes omit them, older gateways ignore them.
    """

    code: ErrorCode
    message: str
    status: int | None = None
    """For ``bad_request``: the model server's HTTP status (e.g. 413, 422), so the client gets the
    matching 4xx."""
    reason: _Reason | None = None
    """For ``bad_request``: one of :data:`ErrorReason` (a gateway ignores a reason it does not know)."""
    param: _Param | None = None
    """For ``bad_request``: the request field the model server named as the fault."""
    prompt_tokens: _TokenCount | None = None
    """For ``context_length_exceeded``: the prompt's tokens as the model server counted them."""
    context_length: _TokenCount | None = None
    """For ``context_length_exceeded``: the most tokens the model server holds for one request."""


class Done(msgspec.Struct, kw_only=True, tag="done", tag_field="t"):
    """The answer is complete."""


ResponseFrame = ChunkFrame | ResultFrame | UsageFrame | ErrorFrame | Done | ReceiptFrame


_USAGE_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens")


def usage_frame(usage: object) -> UsageFrame | None:
    """The usage frame for an OpenAI ``usage`` object, or ``None`` when it is absent or unusable."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = usage.get("total_tokens")
    details = {k: v for k, v in usage.items() if k not in _USAGE_COUNTS}
    return UsageFrame(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total if isinstance(total, int) else prompt + completion,
        details=details or None,
    )


def embeddings_usage_frame(usage: object) -> UsageFrame | None:
    """The usage frame for an embeddings answer's ``usage`` (``prompt_tokens``, ``total_tokens``), or ``None``.

    Embeddings generate nothing, so OpenAI's shape has no ``completion_tokens``; the frame carries 0.
    Without this frame an embeddings request was billed as zero tokens and its receipt flagged.
    """
    if not isinstance(usage, dict):
        return None
    prompt = usage.get("prompt_tokens")
    if not isinstance(prompt, int):
        return None
    return usage_frame({**usage, "completion_tokens": 0, "total_tokens": prompt})


RESPONSES_TOKEN_EVENTS = frozenset(
    {
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.refusal.delta",
        "response.reasoning_text.delta",
        "response.reasoning_summary_text.delta",
    }
)
"""Responses API stream events that carry generated output."""
RESPONSES_PREAMBLE_EVENTS = frozenset(
    {"response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"}
)
"""Responses API stream events sent before any output: a gateway may still fail over after them."""


def is_responses_preamble(chunk: dict[str, Any]) -> bool | None:
    """For a Responses API stream event: whether it comes before any output; ``None`` for other chunks."""
    kind = chunk.get("type")
    return kind in RESPONSES_PREAMBLE_EVENTS if isinstance(kind, str) else None


def carries_token(chunk: dict[str, Any]) -> bool:
    """Whether a streamed chunk carries generated output: any delta field besides ``role``, or text.

    The one definition both sides use: the node counts tokens with it (decode speed), the gateway
    holds back chunks without one (a role-only delta) so that a node dying before its first token can
    still be failed over. A Responses API event carries a token when it is one of the delta events.
    """
    kind = chunk.get("type")
    if isinstance(kind, str):
        return kind in RESPONSES_TOKEN_EVENTS
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        delta = choice.get("delta")
        if isinstance(delta, dict) and any(v for k, v in delta.items() if k != "role"):
            return True
        if choice.get("text"):
            return True
    return False
