"""OpenAI request bodies → Ollama native requests (``/api/chat``, ``/api/generate``, ``/api/embed``).

Sampling parameters become Ollama ``options``; anything Ollama has no equivalent for and that
would change the answer (``n > 1``, ``logit_bias``) is refused rather than silently dropped.
Ollama-only knobs sent by the client (``top_k``, ``min_p``, ``repeat_penalty``, ``num_ctx``, an
``options`` object ...) pass through.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from tooti.errors import BackendBadRequest

if TYPE_CHECKING:
    from tooti.backends.protocol import JSONObject
    from tooti_backend_ollama.config import OllamaConfig

__all__ = ["chat_request", "embed_request", "generate_request", "ollama_options"]

# OpenAI name → Ollama option name.
_RENAMED = {"max_tokens": "num_predict", "max_completion_tokens": "num_predict"}
_SAME = ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty")
# Ollama option names a client may send at the top level (extensions many OpenAI clients expose).
_OLLAMA_OPTIONS = frozenset(
    {
        "top_k",
        "min_p",
        "typical_p",
        "repeat_penalty",
        "repeat_last_n",
        "num_ctx",
        "num_keep",
        "num_predict",
        "mirostat",
        "mirostat_tau",
        "mirostat_eta",
        "penalize_newline",
        "tfs_z",
        "num_thread",
        "num_batch",
    }
)


def ollama_options(body: JSONObject, config: OllamaConfig) -> dict[str, Any]:
    """The Ollama ``options`` for ``body``: config defaults < client's ``options`` < OpenAI fields."""
    _refuse_unsupported(body)
    options: dict[str, Any] = dict(config.options)
    if config.num_ctx is not None:
        options["num_ctx"] = config.num_ctx
    client_options = body.get("options")
    if isinstance(client_options, dict):
        options.update(client_options)
    options.update({k: body[k] for k in _OLLAMA_OPTIONS if body.get(k) is not None})
    options.update({k: body[k] for k in _SAME if body.get(k) is not None})
    options.update({new: body[old] for old, new in _RENAMED.items() if body.get(old) is not None})
    stop = body.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else list(stop)
    return options


def _refuse_unsupported(body: JSONObject) -> None:
    n = body.get("n")
    if n is not None and n != 1:
        raise BackendBadRequest("Ollama generates one choice per request; 'n' must be 1")
    if body.get("logit_bias"):
        raise BackendBadRequest("Ollama does not support 'logit_bias'")


def _format(body: JSONObject) -> str | dict[str, Any] | None:
    if "format" in body:  # Ollama-native field sent by the client
        return body["format"]  # type: ignore[no-any-return]
    rf = body.get("response_format")
    if not isinstance(rf, dict) or rf.get("type") in (None, "text"):
        return None
    if rf["type"] == "json_object":
        return "json"
    if rf["type"] == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            return schema
    raise BackendBadRequest(f"unsupported response_format {rf.get('type')!r}")


def _common(body: JSONObject, config: OllamaConfig, *, stream: bool) -> JSONObject:
    out: JSONObject = {"model": body.get("model"), "stream": stream, "options": ollama_options(body, config)}
    fmt = _format(body)
    if fmt is not None:
        out["format"] = fmt
    keep_alive = body.get("keep_alive", config.keep_alive)
    if keep_alive is not None:
        out["keep_alive"] = keep_alive
    return out


def chat_request(body: JSONObject, config: OllamaConfig, *, stream: bool) -> JSONObject:
    """An ``/api/chat`` request for an OpenAI chat completion body."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        raise BackendBadRequest("'messages' must be a list")
    out = _common(body, config, stream=stream)
    names = _tool_names(messages)
    out["messages"] = [_message(m, names) for m in messages]
    if body.get("tools"):
        out["tools"] = body["tools"]  # same shape in both APIs
    for key in ("think", "logprobs", "top_logprobs"):
        if body.get(key) is not None:
            out[key] = body[key]
    return out


def generate_request(body: JSONObject, config: OllamaConfig, *, stream: bool = False) -> JSONObject:
    """An ``/api/generate`` request for an OpenAI legacy completion body (one prompt)."""
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise BackendBadRequest("Ollama completes one text prompt per request")
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise BackendBadRequest("'prompt' must be a string")
    out = _common(body, config, stream=stream)
    out["prompt"] = prompt
    for key in ("suffix", "system", "raw", "template"):
        if body.get(key) is not None:
            out[key] = body[key]
    return out


def embed_request(body: JSONObject, config: OllamaConfig) -> JSONObject:
    """An ``/api/embed`` request for an OpenAI embeddings body."""
    raw = body.get("input")
    if isinstance(raw, str):
        inputs: list[str] = [raw]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        inputs = list(raw)
    else:
        raise BackendBadRequest("Ollama embeds text: 'input' must be a string or a list of strings")
    out: JSONObject = {"model": body.get("model"), "input": inputs}
    if body.get("dimensions") is not None:
        out["dimensions"] = body["dimensions"]
    if config.keep_alive is not None:
        out["keep_alive"] = config.keep_alive
    if config.options or config.num_ctx:
        out["options"] = ollama_options({}, config)
    return out


def _tool_names(messages: list[Any]) -> dict[str, str]:
    """tool_call id → function name, so ``tool`` results can name their tool as Ollama wants."""
    names: dict[str, str] = {}
    for m in messages:
        for call in (m.get("tool_calls") or []) if isinstance(m, dict) else []:
            if isinstance(call, dict) and isinstance(call.get("function"), dict):
                names[str(call.get("id"))] = str(call["function"].get("name", ""))
    return names


def _message(message: Any, tool_names: dict[str, str]) -> JSONObject:
    if not isinstance(message, dict) or not isinstance(message.get("role"), str):
        raise BackendBadRequest("every message needs a 'role'")
    text, images = _content(message.get("content"))
    out: JSONObject = {"role": message["role"], "content": text}
    if images:
        out["images"] = images
    if message.get("tool_calls"):
        out["tool_calls"] = [_tool_call(c) for c in message["tool_calls"]]
    if message["role"] == "tool" and message.get("tool_call_id") in tool_names:
        out["tool_name"] = tool_names[message["tool_call_id"]]
    return out


def _content(content: Any) -> tuple[str, list[str]]:
    if content is None or isinstance(content, str):
        return content or "", []
    if not isinstance(content, list):
        raise BackendBadRequest("message 'content' must be a string or a list of parts")
    texts: list[str] = []
    images: list[str] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append(str(part.get("text", "")))
        elif kind == "image_url":
            url = str((part.get("image_url") or {}).get("url", ""))
            if not url.startswith("data:"):
                raise BackendBadRequest("Ollama takes images inline: use a data: URL")
            images.append(url.partition(",")[2])
        else:
            raise BackendBadRequest(f"unsupported content part type {kind!r}")
    return "\n".join(texts), images


def _tool_call(call: Any) -> JSONObject:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(function, dict):
        raise BackendBadRequest("a tool call needs a 'function'")
    arguments = function.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments or "{}")
        except json.JSONDecodeError:
            raise BackendBadRequest("tool call arguments are not valid JSON") from None
    return {"function": {"name": function.get("name"), "arguments": arguments}}
