"""Ollama native answers → OpenAI shapes (chat completions, chunks, text completions, embeddings)."""

from __future__ import annotations

import base64
import itertools
import json
import struct
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from tooti.errors import MalformedResponse

if TYPE_CHECKING:
    from tooti.backends.protocol import JSONObject

__all__ = ["ChunkTranslator", "chat_completion", "embeddings_list", "text_completion", "usage"]


def _created(payload: JSONObject) -> int:
    stamp = payload.get("created_at")
    if isinstance(stamp, str):
        try:  # Ollama writes nanosecond fractions; fromisoformat takes at most microseconds
            return int(datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp())
        except ValueError:
            pass
    return int(time.time())


def usage(payload: JSONObject) -> dict[str, int]:
    """OpenAI usage from Ollama's token counts."""
    prompt = int(payload.get("prompt_eval_count") or 0)
    completion = int(payload.get("eval_count") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish(payload: JSONObject, has_tools: bool) -> str:
    if has_tools:
        return "tool_calls"
    return "length" if payload.get("done_reason") == "length" else "stop"


def _tool_calls(message: JSONObject) -> list[JSONObject]:
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise MalformedResponse("Ollama 'tool_calls' is not a list")
    out = []
    for i, call in enumerate(calls):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            raise MalformedResponse("Ollama tool call without a 'function'")
        arguments = function.get("arguments", {})
        out.append(
            {
                "index": i,
                "id": str(call.get("id") or f"call_{uuid.uuid4().hex[:24]}"),
                "type": "function",
                "function": {
                    "name": function.get("name"),
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            }
        )
    return out


def _message(payload: JSONObject) -> JSONObject:
    message = payload.get("message")
    if not isinstance(message, dict) or not isinstance(message.get("content", ""), str):
        raise MalformedResponse("Ollama chat answer lacks a 'message' with text content")
    return message


def chat_completion(payload: JSONObject) -> JSONObject:
    """A ``chat.completion`` for a non-streamed ``/api/chat`` answer."""
    if payload.get("done") is not True:
        raise MalformedResponse("Ollama chat answer is not done: the answer is incomplete")
    message = _message(payload)
    calls = _tool_calls(message)
    out_message: JSONObject = {"role": "assistant", "content": message.get("content", "")}
    if calls:
        out_message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"} for c in calls]
    if message.get("thinking"):
        out_message["reasoning_content"] = message["thinking"]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": _created(payload),
        "model": payload.get("model"),
        "choices": [{"index": 0, "message": out_message, "finish_reason": _finish(payload, bool(calls))}],
        "usage": usage(payload),
    }


class ChunkTranslator:
    """Turns the NDJSON lines of a streamed ``/api/chat`` into ``chat.completion.chunk`` objects.

    The first chunk carries ``role``; the ``done`` line yields a finish chunk and, if the client
    wants usage, a last chunk with empty ``choices`` and ``usage``, exactly as OpenAI streams do.
    """

    def __init__(self, model: str | None, *, include_usage: bool) -> None:
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.model = model
        self.include_usage = include_usage
        self.done = False
        self._first = True
        self._tool_index = itertools.count()
        self._saw_tools = False

    def translate(self, payload: JSONObject) -> list[JSONObject]:
        """Chunks for one NDJSON object (already checked for an ``error`` key)."""
        if self.done:
            raise MalformedResponse("Ollama sent data after its final 'done' line")
        message = _message(payload) if "message" in payload or payload.get("done") is not True else {}
        chunks = []
        delta = self._delta(message)
        if delta:
            chunks.append(self._chunk(payload, delta, None))
        if payload.get("done") is True:
            self.done = True
            last = {"role": "assistant", "content": ""} if self._first else {}
            chunks.append(self._chunk(payload, last, _finish(payload, self._saw_tools)))
            if self.include_usage:
                chunks.append({**self._base(payload), "choices": [], "usage": usage(payload)})
        return chunks

    def _delta(self, message: JSONObject) -> JSONObject:
        delta: JSONObject = {}
        if message.get("content"):
            delta["content"] = message["content"]
        if message.get("thinking"):
            delta["reasoning_content"] = message["thinking"]
        calls = _tool_calls(message)
        if calls:
            self._saw_tools = True
            delta["tool_calls"] = [{**c, "index": next(self._tool_index)} for c in calls]
        if delta and self._first:
            delta = {"role": "assistant", **delta}
        return delta

    def _base(self, payload: JSONObject) -> JSONObject:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": _created(payload),
            "model": payload.get("model") or self.model,
        }

    def _chunk(self, payload: JSONObject, delta: JSONObject, finish: str | None) -> JSONObject:
        self._first = False
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        return {**self._base(payload), "choices": [choice]}


class TextChunkTranslator:
    """Turns the NDJSON lines of a streamed ``/api/generate`` into ``text_completion`` chunks, one per line.

    The ``done`` line yields a finish chunk and, if the client wants usage, a last chunk with empty
    ``choices`` and ``usage``, as OpenAI streams legacy completions.
    """

    def __init__(self, model: str | None, *, include_usage: bool) -> None:
        self.id = f"cmpl-{uuid.uuid4().hex}"
        self.model = model
        self.include_usage = include_usage
        self.done = False

    def translate(self, payload: JSONObject) -> list[JSONObject]:
        """Chunks for one NDJSON object (already checked for an ``error`` key)."""
        if self.done:
            raise MalformedResponse("Ollama sent data after its final 'done' line")
        text = payload.get("response")
        if not isinstance(text, str):
            raise MalformedResponse("Ollama generate stream line lacks 'response'")
        base = {"id": self.id, "object": "text_completion", "created": _created(payload)}
        base["model"] = payload.get("model") or self.model
        chunks = []
        if text:
            chunks.append({**base, "choices": [{"index": 0, "text": text, "finish_reason": None, "logprobs": None}]})
        if payload.get("done") is True:
            self.done = True
            finish = _finish(payload, False)
            chunks.append({**base, "choices": [{"index": 0, "text": "", "finish_reason": finish, "logprobs": None}]})
            if self.include_usage:
                chunks.append({**base, "choices": [], "usage": usage(payload)})
        return chunks


def text_completion(payload: JSONObject) -> JSONObject:
    """A ``text_completion`` for a non-streamed ``/api/generate`` answer."""
    if payload.get("done") is not True or not isinstance(payload.get("response"), str):
        raise MalformedResponse("Ollama generate answer is incomplete or lacks 'response'")
    return {
        "id": f"cmpl-{uuid.uuid4().hex}",
        "object": "text_completion",
        "created": _created(payload),
        "model": payload.get("model"),
        "choices": [
            {"index": 0, "text": payload["response"], "finish_reason": _finish(payload, False), "logprobs": None}
        ],
        "usage": usage(payload),
    }


def embeddings_list(payload: JSONObject, *, encoding: str | None) -> JSONObject:
    """An OpenAI embeddings ``list`` for an ``/api/embed`` answer (``float`` or ``base64`` encoding)."""
    vectors = payload.get("embeddings")
    if not isinstance(vectors, list) or not all(isinstance(v, list) for v in vectors):
        raise MalformedResponse("Ollama embed answer lacks an 'embeddings' list of vectors")
    data = [{"object": "embedding", "index": i, "embedding": _encode(v, encoding)} for i, v in enumerate(vectors)]
    tokens = int(payload.get("prompt_eval_count") or 0)
    return {
        "object": "list",
        "model": payload.get("model"),
        "data": data,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encode(vector: list[Any], encoding: str | None) -> list[float] | str:
    if encoding == "base64":  # what the openai SDK asks for by default: little-endian float32
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return [float(x) for x in vector]
