"""ASGI plumbing of the Ollama shim: bodies in, JSON, text and NDJSON out, Ollama-style errors."""

from __future__ import annotations

import json
from typing import Any

MAX_BODY = 4 * 1024 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


async def read_json(receive: Any) -> dict[str, Any]:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
        if size > MAX_BODY:
            raise HttpError(413, "request body too large")
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"invalid character in request body: {exc.msg}") from None
    if not isinstance(body, dict):
        raise HttpError(400, "json: cannot unmarshal into Go value of type api.Request")
    return body


async def send_bytes(send: Any, status: int, body: bytes, content_type: str, *, head: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    await send_bytes(send, status, json.dumps(payload).encode(), "application/json; charset=utf-8")


async def send_line(send: Any, payload: dict[str, Any]) -> None:
    await send({"type": "http.response.body", "body": json.dumps(payload).encode() + b"\n", "more_body": True})
