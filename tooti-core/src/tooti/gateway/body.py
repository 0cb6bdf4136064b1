"""The HTTP edge's reading of an OpenAI request body: bounded, checked, every failure a 400 naming the field.

What routing needs and the ``tooti`` preferences object are read by :func:`tooti.wire.request_body.read_body`,
the same reader the canary prober uses. Added here, for bodies a client sent: the bounds every body
must keep (:mod:`tooti.gateway.json_limits`), the shape of chat ``tools``
(:mod:`tooti.gateway.tool_checks`) and what a stateless gateway refuses on ``/v1/responses``
(:mod:`tooti.gateway.responses_api`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tooti.gateway.api_errors import ApiError
from tooti.gateway.json_limits import decode_object
from tooti.gateway.responses_api import check_responses_body
from tooti.gateway.tool_checks import check_response_tools, check_tools
from tooti.wire.request_body import InvalidBody, read_body

if TYPE_CHECKING:
    from tooti.wire.infer import RequestKind
    from tooti.wire.request_body import ParsedBody

__all__ = ["parse_body"]


def parse_body(raw: bytes, kind: RequestKind) -> ParsedBody:
    """Decode and check ``raw``; raise :class:`ApiError` (400) naming the first bad field."""
    data = decode_object(raw)  # bounded: depth, 64-bit integers, string and array sizes
    try:
        parsed = read_body(data, kind)
    except InvalidBody as exc:
        raise ApiError(400, exc.message, param=exc.param) from None
    if kind == "responses":
        check_responses_body(data)
        check_response_tools(data.get("tools"))
    elif kind == "chat":
        check_tools(data.get("tools"))
    return parsed
