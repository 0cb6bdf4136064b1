"""A complete, dependency-free InferenceBackend: the answer is the last user message, word by word."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar, Self

import msgspec

from tooti import BackendHealth, BackendSettings, JSONObject, LoadSnapshot, ModelInfo
from tooti.errors import BackendBadRequest, ModelNotFound

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class EchoConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``backends.echo`` config section."""

    model: str = "echo-1"
    prefix: str = ""


def _last_user_text(body: JSONObject) -> str:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BackendBadRequest("'messages' must be a non-empty list")
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user" and isinstance(message.get("content"), str):
            return str(message["content"])
    raise BackendBadRequest("no user message with text content")


def _usage(prompt: str, completion: list[str]) -> dict[str, int]:
    p, c = len(prompt.split()), len(completion)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class EchoBackend:
    """Echoes the last user message. ``max_tokens`` limits the number of words."""

    name: ClassVar[str] = "echo"
    config_type: ClassVar[type[msgspec.Struct]] = EchoConfig
    native_endpoints: ClassVar[frozenset[str]] = frozenset({"chat", "completion", "embeddings"})
    """Hook API 2: no native ``/v1/responses``, so the node translates it to :meth:`chat`."""

    def __init__(self, config: EchoConfig) -> None:
        self.config = config
        self.in_flight = 0

    @classmethod
    def from_config(cls, settings: BackendSettings, config: msgspec.Struct) -> Self:
        """Build the backend; the echo backend needs no server, so ``settings`` is unused."""
        assert isinstance(config, EchoConfig)
        return cls(config)

    async def start(self) -> None:
        """Nothing to start."""

    async def aclose(self) -> None:
        """Nothing to close."""

    async def health(self) -> BackendHealth:
        """Always healthy."""
        return BackendHealth(ok=True, detail="echo")

    async def list_models(self) -> list[ModelInfo]:
        """The one configured model."""
        return [ModelInfo(id=self.config.model, context_length=4096, owned_by="echo")]

    async def load(self) -> LoadSnapshot:
        """Requests being answered now."""
        return LoadSnapshot(in_flight=self.in_flight, capacity=None)

    def _words(self, body: JSONObject) -> tuple[str, list[str]]:
        if body.get("model") != self.config.model:
            raise ModelNotFound(f"model {body.get('model')!r} not found; this backend serves {self.config.model!r}")
        prompt = _last_user_text(body)
        words = (self.config.prefix + prompt).split()
        limit = body.get("max_tokens")
        return prompt, words[:limit] if isinstance(limit, int) and limit > 0 else words

    async def chat(self, body: JSONObject) -> JSONObject:
        """One ``chat.completion`` with the echoed text."""
        prompt, words = self._words(body)
        return {
            "id": f"chatcmpl-echo-{time.monotonic_ns()}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.config.model,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": " ".join(words)}, "finish_reason": "stop"}
            ],
            "usage": _usage(prompt, words),
        }

    async def chat_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """One chunk per word, then a final chunk with ``finish_reason`` and usage."""
        prompt, words = self._words(body)
        base: dict[str, Any] = {"id": f"chatcmpl-echo-{time.monotonic_ns()}", "object": "chat.completion.chunk"}
        base |= {"created": int(time.time()), "model": self.config.model}
        self.in_flight += 1
        try:
            for i, word in enumerate(words):
                delta = {"role": "assistant", "content": word} if i == 0 else {"content": " " + word}
                yield base | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            yield base | {
                "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                "usage": _usage(prompt, words),
            }
        finally:
            self.in_flight -= 1

    async def completion(self, body: JSONObject) -> JSONObject:
        """Echo ``prompt`` as a ``text_completion``."""
        prompt = body.get("prompt")
        if not isinstance(prompt, str):
            raise BackendBadRequest("'prompt' must be a string")
        chat = await self.chat({"model": body.get("model"), "messages": [{"role": "user", "content": prompt}]})
        text = chat["choices"][0]["message"]["content"]
        choice = {"index": 0, "text": text, "finish_reason": "stop"}
        return {
            "id": chat["id"],
            "object": "text_completion",
            "model": chat["model"],
            "choices": [choice],
            "usage": chat["usage"],
        }

    async def embeddings(self, body: JSONObject) -> JSONObject:
        """A tiny deterministic embedding: word count and character count."""
        raw = body.get("input")
        inputs = [raw] if isinstance(raw, str) else raw
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            raise BackendBadRequest("'input' must be a string or a list of strings")
        data = [
            {"object": "embedding", "index": i, "embedding": [float(len(s.split())), float(len(s))]}
            for i, s in enumerate(inputs)
        ]
        tokens = sum(len(s.split()) for s in inputs)
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "model": self.config.model, "data": data, "usage": usage}
