"""Bounds on decoded request JSON, checked at the HTTP edge before anything is routed.

JSON itself has no limits, but everything behind the gateway does: the node protocol encodes
integers in at most 64 bits (a ``"seed": 2**70`` failed there, after routing, and marked every node
it tried as failed), Python's recursion limit makes a body nested 1,000 levels deep raise deep
inside the decoder (a 500 with a traceback), and a single huge string or array ties up a node for
nothing. So a body that breaks one of these bounds is a 400 that names the field, e.g.
``messages[0].content``, and never reaches a node.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tooti.gateway.api_errors import ApiError

__all__ = ["MAX_ARRAY_ITEMS", "MAX_DEPTH", "MAX_STRING_CHARS", "check_limits", "decode_object"]

MAX_DEPTH = 64
"""Deepest nesting of arrays and objects (JSON schemas of tools nest far less)."""
MAX_STRING_CHARS = 2 * 1024 * 1024
"""Longest string value or object key, in characters."""
MAX_ARRAY_ITEMS = 100_000
"""Most items in one array or members in one object (token-id prompts included)."""
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1
"""Integers must fit 64 bits, signed or unsigned, as the node protocol encodes them."""


def _path(parts: tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "body"


def _fail(message: str, parts: tuple[str | int, ...]) -> ApiError:
    where = _path(parts)
    return ApiError(400, f"'{where}' {message}", param=where, code="invalid_value")


def _check_scalar(value: Any, parts: tuple[str | int, ...]) -> None:
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise _fail(f"is longer than {MAX_STRING_CHARS} characters", parts)
    elif isinstance(value, int) and not isinstance(value, bool) and not MIN_INT <= value <= MAX_INT:
        raise _fail("is an integer outside the 64-bit range", parts)


def _check_item(item: Any, parts: tuple[str | int, ...], key: str | int) -> None:
    """Check one array item or object member; scalars inline (no call per token id), containers recursively."""
    kind = type(item)
    if kind is str:
        if len(item) > MAX_STRING_CHARS:
            raise _fail(f"is longer than {MAX_STRING_CHARS} characters", (*parts, key))
    elif kind is int:
        if not MIN_INT <= item <= MAX_INT:
            raise _fail("is an integer outside the 64-bit range", (*parts, key))
    elif kind is list or kind is dict:
        check_limits(item, (*parts, key))


def check_limits(value: Any, parts: tuple[str | int, ...] = ()) -> None:
    """Raise :class:`ApiError` (400, naming the field) if ``value`` breaks a bound above."""
    if not isinstance(value, list | dict):
        _check_scalar(value, parts)
        return
    if len(parts) >= MAX_DEPTH:
        raise _fail(f"is nested more than {MAX_DEPTH} levels deep", parts)
    if len(value) > MAX_ARRAY_ITEMS:
        raise _fail(f"has more than {MAX_ARRAY_ITEMS} items", parts)
    if isinstance(value, list):
        if value and all(type(item) is int for item in value):  # token ids: checked at C speed
            if min(value) < MIN_INT or max(value) > MAX_INT:
                bad = next(i for i, item in enumerate(value) if not MIN_INT <= item <= MAX_INT)
                raise _fail("is an integer outside the 64-bit range", (*parts, bad))
            return
        for i, item in enumerate(value):
            _check_item(item, parts, i)
        return
    for key, item in value.items():
        if len(key) > MAX_STRING_CHARS:
            raise _fail(f"has a key longer than {MAX_STRING_CHARS} characters", parts)
        _check_item(item, parts, key)


def decode_object(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be a JSON object within the bounds above.

    Raises:
        ApiError: 400 for an empty body, invalid JSON, a non-object, or a broken bound.
    """
    if not raw.strip():
        raise ApiError(400, "request body is empty; expected a JSON object", code="invalid_json")
    try:
        data = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:
        raise ApiError(
            400, f"request body is nested more than {MAX_DEPTH} levels deep", param="body", code="invalid_value"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, f"request body must be a JSON object, got {type(data).__name__}", code="invalid_json")
    check_limits(data)
    return data
