"""Frames of the ``/tooti/infer/1.0.0`` stream protocol (msgspec, length-prefixed on the wire).

The gateway writes an :class:`InferRequest` and reads response frames until :class:`Done` or
:class:`ErrorFrame`; after ``Done`` it may send its next request on the same stream (see
docs/p2p.md). ``body`` is the client's OpenAI JSON passed through untouched. Frames are a tagged
union so new kinds can be added compatibly.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "PROTOCOL_ID",
    "ChunkFrame",
    "Done",
    "ErrorCode",
    "ErrorFrame",
    "InferRequest",
    "RequestKind",
    "ResponseFrame",
    "ResultFrame",
    "UsageFrame",
]

PROTOCOL_ID = "/tooti/infer/1.0.0"

RequestKind = Literal["chat", "completion", "embeddings"]
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


class ChunkFrame(msgspec.Struct, kw_only=True, tag="chunk", tag_field="t"):
    """One OpenAI ``chat.completion.chunk`` (or ``text_completion`` chunk) of a streamed answer."""

    data: dict[str, Any]


class ResultFrame(msgspec.Struct, kw_only=True, tag="result", tag_field="t"):
    """The whole answer of a non-streamed request."""

    data: dict[str, Any]


class UsageFrame(msgspec.Struct, kw_only=True, tag="usage", tag_field="t"):
    """Token counts of the request, sent before :class:`Done` when the backend reports them."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ErrorFrame(msgspec.Struct, kw_only=True, tag="error", tag_field="t"):
    """The request failed; ``code`` maps to a :class:`tooti.errors.BackendError` subclass."""

    code: ErrorCode
    message: str


class Done(msgspec.Struct, kw_only=True, tag="done", tag_field="t"):
    """The answer is complete."""


ResponseFrame = ChunkFrame | ResultFrame | UsageFrame | ErrorFrame | Done
