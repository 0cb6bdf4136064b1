"""Whole answers assembled from streamed ones, for servers that stop generating only for a stream.

A model server learns that its client left when a write fails. While streaming, that is at the next
token; for a non-streamed request, only if the server polls the connection while it generates.
llama.cpp's (in ``xllamacpp`` 2026.10) does not do so reliably: measured, three of four requests
abandoned after 0.3-3 s generated all 900 tokens for nobody (one stopped at once). A backend for
such a server serves a non-streamed request by streaming it and assembling the answer here, so a
closed request always stops generation at the next token.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tooti.errors import MalformedResponse

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.backends.protocol import JSONObject

__all__ = ["ChoiceAssembler", "assemble_chat", "assemble_completion"]

_CHUNK_ONLY = frozenset({"choices", "object", "usage"})


def _obj(value: Any) -> JSONObject:
    return value if isinstance(value, dict) else {}


class ChoiceAssembler:
    """Accumulates the chunks of one choice (chat deltas or completion text) into its whole form."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.role = "assistant"
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, JSONObject] = {}
        self.logprobs: list[Any] = []
        self.finish_reason: Any = None

    def feed_delta(self, choice: JSONObject) -> None:
        """One ``chat.completion.chunk`` choice."""
        delta = _obj(choice.get("delta"))
        if isinstance(delta.get("role"), str):
            self.role = delta["role"]
        if isinstance(delta.get("content"), str):
            self.text.append(delta["content"])
        if isinstance(delta.get("reasoning_content"), str):
            self.reasoning.append(delta["reasoning_content"])
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._tool_call(call)
        self._common(choice)

    def feed_text(self, choice: JSONObject) -> None:
        """One ``text_completion`` chunk choice."""
        if isinstance(choice.get("text"), str):
            self.text.append(choice["text"])
        self._common(choice)

    def _common(self, choice: JSONObject) -> None:
        logprobs = choice.get("logprobs")
        if isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list):
            self.logprobs += logprobs["content"]
        if choice.get("finish_reason"):
            self.finish_reason = choice["finish_reason"]

    def _tool_call(self, call: JSONObject) -> None:
        position = call.get("index", len(self.tool_calls))
        fn = _obj(call.get("function"))
        whole = self.tool_calls.setdefault(
            position, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
        )
        if call.get("id"):
            whole["id"] = call["id"]
        if call.get("type"):
            whole["type"] = call["type"]
        if isinstance(fn.get("name"), str):
            whole["function"]["name"] += fn["name"]
        if isinstance(fn.get("arguments"), str):
            whole["function"]["arguments"] += fn["arguments"]

    def message(self) -> JSONObject:
        """The choice of a ``chat.completion``."""
        message: JSONObject = {
            "role": self.role,
            "content": "".join(self.text) if self.text or not self.tool_calls else None,
        }
        if self.reasoning:
            message["reasoning_content"] = "".join(self.reasoning)
        if self.tool_calls:
            message["tool_calls"] = [self.tool_calls[k] for k in sorted(self.tool_calls)]
        out: JSONObject = {"index": self.index, "message": message, "finish_reason": self.finish_reason}
        if self.logprobs:
            out["logprobs"] = {"content": self.logprobs}
        return out

    def completion_choice(self) -> JSONObject:
        """The choice of a ``text_completion``."""
        return {"index": self.index, "text": "".join(self.text), "finish_reason": self.finish_reason, "logprobs": None}


async def _assemble(chunks: AsyncIterator[JSONObject], *, chat: bool) -> JSONObject:
    top: JSONObject = {}
    choices: dict[int, ChoiceAssembler] = {}
    usage: Any = None
    async for chunk in chunks:
        for key, value in chunk.items():
            if key not in _CHUNK_ONLY:
                top[key] = value  # id, created, model, system_fingerprint, server extras (timings)
        if isinstance(chunk.get("usage"), dict):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            whole = choices.setdefault(index, ChoiceAssembler(index))
            (whole.feed_delta if chat else whole.feed_text)(choice)
    if not choices:
        raise MalformedResponse("the streamed answer had no choices")
    ordered = [choices[k] for k in sorted(choices)]
    out: JSONObject = {
        **top,
        "object": "chat.completion" if chat else "text_completion",
        "choices": [c.message() if chat else c.completion_choice() for c in ordered],
    }
    if usage is not None:
        out["usage"] = usage
    return out


async def assemble_chat(chunks: AsyncIterator[JSONObject]) -> JSONObject:
    """A ``chat.completion`` from its ``chat.completion.chunk`` stream."""
    return await _assemble(chunks, chat=True)


async def assemble_completion(chunks: AsyncIterator[JSONObject]) -> JSONObject:
    """A ``text_completion`` from its chunk stream."""
    return await _assemble(chunks, chat=False)
