"""Ollama ↔ OpenAI translation for the shim: options, messages, final NDJSON lines, timestamps."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .asgi import HttpError

if TYPE_CHECKING:
    import httpx

OPTION_TO_OPENAI = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "typical_p": "typical_p",
}


def now() -> str:
    """Ollama's timestamp style: RFC 3339 with nanoseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def ns(ms: float | None) -> int:
    return int((ms or 0.0) * 1_000_000)


def openai_options(body: dict[str, Any]) -> dict[str, Any]:
    options = body.get("options") or {}
    out = {OPTION_TO_OPENAI[k]: v for k, v in options.items() if k in OPTION_TO_OPENAI}
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"schema": fmt}}
    return out


def openai_message(message: dict[str, Any]) -> dict[str, Any]:
    out = {"role": message.get("role"), "content": message.get("content", "")}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])},
            }
            for i, c in enumerate(message["tool_calls"])
        ]
    return out


def piece(text: str, *, chat: bool) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": text}} if chat else {"response": text}


def final(
    name: str, usage: dict[str, Any], timings: dict[str, Any], finish: str | None, started: float
) -> dict[str, Any]:
    return {
        "model": name,
        "created_at": now(),
        "done": True,
        "done_reason": "length" if finish == "length" else "stop",
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": 1000,
        "prompt_eval_count": int(usage.get("prompt_tokens", 0)),
        "prompt_eval_duration": ns(timings.get("prompt_ms")),
        "eval_count": int(usage.get("completion_tokens", 0)),
        "eval_duration": ns(timings.get("predicted_ms")),
    }


def normalize(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def upstream_message(raw: bytes) -> str:
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        return raw.decode(errors="replace")
    error = payload.get("error") if isinstance(payload, dict) else None
    return str(error.get("message") if isinstance(error, dict) else error or payload)


async def upstream_json(client: httpx.AsyncClient, path: str, request: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=request)
    if response.status_code >= 300:
        raise HttpError(response.status_code, upstream_message(response.content))
    return response.json()  # type: ignore[no-any-return]
