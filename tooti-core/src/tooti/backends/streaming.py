"""Incremental decoders for streamed response bodies: lines, Server-Sent Events and NDJSON.

They are plain synchronous state machines fed with byte chunks, so one async loop over
``response.aiter_bytes()`` drives them and closing that loop closes the HTTP response; no nested
async generators are left for the garbage collector to finalize. Every line is capped so a server
cannot make the node buffer without bound.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tooti.errors import MalformedResponse

__all__ = ["MAX_LINE_BYTES", "LineSplitter", "SSEDecoder", "decode_json_object"]

MAX_LINE_BYTES = 8 * 1024 * 1024


class LineSplitter:
    """Split a byte stream into text lines (LF or CRLF terminated)."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buf = bytearray()
        self._max = max_line_bytes

    def feed(self, data: bytes) -> list[str]:
        """Add bytes; return the lines they complete, without terminators."""
        self._buf += data
        if b"\n" not in data:
            if len(self._buf) > self._max:
                raise MalformedResponse(f"a streamed line exceeds {self._max} bytes")
            return []
        *lines, rest = bytes(self._buf).split(b"\n")
        self._buf = bytearray(rest)
        if max(len(line) for line in lines) > self._max:
            raise MalformedResponse(f"a streamed line exceeds {self._max} bytes")
        return [line.removesuffix(b"\r").decode("utf-8", errors="replace") for line in lines]

    def flush(self) -> list[str]:
        """Return the unterminated last line, if any."""
        rest, self._buf = bytes(self._buf), bytearray()
        return [rest.decode("utf-8", errors="replace")] if rest else []


class SSEDecoder:
    """Turn Server-Sent Event lines into ``data`` payloads (multi-line data joined by newlines).

    ``event``, ``id`` and ``retry`` fields and ``:`` comments (keep-alive pings) are ignored: the
    OpenAI dialect carries everything in ``data``.
    """

    def __init__(self) -> None:
        self._data: list[str] = []

    def feed(self, line: str) -> str | None:
        """Consume one line; return an event's data when the line completes it."""
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            self._data.append(value.removeprefix(" "))
        return None

    def flush(self) -> str | None:
        """Return a last event not followed by a blank line (lenient towards abrupt servers)."""
        return self._dispatch()

    def _dispatch(self) -> str | None:
        if not self._data:
            return None
        data, self._data = "\n".join(self._data), []
        return data


def decode_json_object(text: str | bytes, *, what: str = "response") -> dict[str, Any]:
    """Decode a JSON object or raise :class:`MalformedResponse` naming ``what``."""
    try:
        value = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise MalformedResponse(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise MalformedResponse(f"{what} is not a JSON object but {type(value).__name__}")
    return value
