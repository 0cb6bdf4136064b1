"""The gateway's side of ``POST /v1/responses``: what it refuses, and how its stream is written.

The node serves the request (passed through to a server with its own Responses API, or translated
to chat, see :mod:`tooti.backends.endpoints`); the gateway checks the body and relays the events.

Stateless: tooti stores no responses, so ``previous_response_id``, ``store: true`` and
``background: true`` (which needs a stored response to poll) are a 400 that says so, instead of a
request that silently forgets the conversation. (OpenAI's own default for ``store`` is true; a
client that does not send it gets an unstored response, as from vLLM's default configuration.)

Stream: Server-Sent Events with an ``event:`` line per event, as OpenAI sends them, and no
``[DONE]``; the stream ends with ``response.completed`` (or ``response.incomplete``/``failed``). A
failure after the first event ends it with an ``error`` event whose ``error`` object makes the
official SDKs raise, never with a silently short answer.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tooti.gateway.api_errors import ApiError

__all__ = ["ResponsesEventWriter", "check_responses_body"]


def check_responses_body(data: dict[str, Any]) -> None:
    """Refuse what a stateless gateway cannot do, naming the field (400)."""
    if data.get("previous_response_id") is not None:
        raise ApiError(
            400,
            "previous_response_id is not supported: this gateway is stateless and stores no responses; "
            "send the earlier turns in 'input' instead",
            param="previous_response_id",
            code="unsupported_parameter",
        )
    if data.get("store") is True:
        raise ApiError(
            400,
            "store: true is not supported: this gateway is stateless and stores no responses; omit it or send false",
            param="store",
            code="unsupported_parameter",
        )
    if data.get("background") is True:
        raise ApiError(
            400,
            "background: true is not supported: this gateway is stateless and stores no responses to poll",
            param="background",
            code="unsupported_parameter",
        )
    value = data.get("input")
    if not isinstance(value, str | list) or (isinstance(value, list) and not value) or value == "":
        raise ApiError(400, "'input' must be a non-empty string or array of input items", param="input")


class ResponsesEventWriter:
    """Encodes one Responses stream: numbers the events (servers such as llama.cpp send none)."""

    def __init__(self) -> None:
        self._seq = 0

    def encode(self, event: dict[str, Any]) -> bytes:
        """The SSE bytes of ``event`` (``event:`` line included); fills ``sequence_number`` if missing."""
        kind = event.get("type")
        if not isinstance(event.get("sequence_number"), int):
            event = {**event, "sequence_number": self._seq}
        self._seq = event["sequence_number"] + 1
        name = kind if isinstance(kind, str) and kind.isprintable() and "\n" not in kind else "message"
        return b"event: " + name.encode() + b"\ndata: " + msgspec.json.encode(event) + b"\n\n"

    def error(self, message: str, error_type: str, code: str | None) -> bytes:
        """An ``error`` event ending a broken stream (the SDKs raise on its ``error`` object)."""
        error = {"message": message, "type": error_type, "code": code, "param": None}
        return self.encode({"type": "error", "code": code, "message": message, "param": None, "error": error})
