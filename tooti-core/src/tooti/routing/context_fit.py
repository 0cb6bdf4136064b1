"""Whether a node's context window can hold a request: the estimate, and the predicate eligibility applies.

Nodes announce each model's ``context_length`` (the tokens one request may use on them); a request
needs its prompt's tokens plus the ``max_tokens`` it asks for. The gateway has no tokenizer for the
models its nodes serve (they differ per node, and a tokenizer per model is hundreds of MB and
milliseconds per request), so it *estimates* the prompt's tokens from the size of its text, and the
estimate errs on the low side on purpose:

* too low, a node gets a request it cannot hold and refuses it with its exact counts, which the
  client gets as ``context_length_exceeded`` (tooti.gateway.api_errors): a correct answer;
* too high, the gateway would refuse a request some node could serve: a wrong answer.

So the estimate is one token per :data:`BYTES_PER_TOKEN` characters of text, only text that the
model reads (message contents, tool schemas, prompts; not image data), with whitespace runs
counted as one character, plus one token per token id sent as integers. Measured with SmolLM2's
tokenizer (llama.cpp ``/tokenize``): English docs 3.2 bytes per token, Python 3.6, JSON tool schemas
3.8, Chinese 1.9, base64 1.2, digits 1.0, and the most any text reached, a phrase repeated 400
times, 6.0; a run of 2,000 spaces was 59 bytes per token, hence the whitespace rule. Larger
vocabularies reach 4-5 on prose. At 6, the estimate stayed at or below the true count for every
sample, and a prompt several times a node's context (an agent's 16k-token first turn on a 1k or 8k
context) is still caught before any node is tried.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tooti.routing.protocol import Candidate

__all__ = ["BYTES_PER_TOKEN", "estimate_prompt_tokens", "holds_context", "largest_context", "needed_context"]

BYTES_PER_TOKEN = 6
"""Characters of text per estimated token: above every ratio measured, so the estimate stays low."""
MAX_COUNT = 100_000_000
_WHITESPACE_RUN = re.compile(r"\s{2,}")
_MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def _chars(text: str) -> int:
    """``len(text)`` with each whitespace run counted as one character."""
    return len(text) - sum(len(run) - 1 for run in _WHITESPACE_RUN.findall(text))


def _part_text(part: Any) -> int:
    """Characters of one content part the model reads as text (images and audio are not text)."""
    if isinstance(part, str):
        return _chars(part)
    if not isinstance(part, dict):
        return 0
    n = 0
    for key in ("text", "output", "arguments", "refusal"):
        value = part.get(key)
        if isinstance(value, str):
            n += _chars(value)
    content = part.get("content")
    if content is not None:
        n += _content(content)
    return n


def _content(content: Any) -> int:
    if isinstance(content, str):
        return _chars(content)
    if isinstance(content, list):
        return sum(_part_text(p) for p in content)
    return 0


def _message(message: Any) -> int:
    if not isinstance(message, dict):
        return 0
    n = _content(message.get("content"))
    calls = message.get("tool_calls")
    if isinstance(calls, list):
        for call in calls:
            fn = call.get("function") if isinstance(call, dict) else None
            if isinstance(fn, dict):
                n += _part_text(fn) + _chars(str(fn.get("name") or ""))
    return n


def _sequence_tokens(item: Any) -> int:
    """Estimated tokens of one prompt or embeddings input: text, or a list of token ids."""
    if isinstance(item, str):
        return -(-_chars(item) // BYTES_PER_TOKEN)
    if isinstance(item, list) and item and all(isinstance(t, int) for t in item):
        return len(item)
    return 0


def estimate_prompt_tokens(kind: str, body: dict[str, Any]) -> int:
    """A low estimate of the tokens of the longest sequence ``body`` asks a model to read."""
    chars = 0
    if kind == "chat":
        messages = body.get("messages")
        chars = sum(_message(m) for m in messages) if isinstance(messages, list) else 0
    elif kind == "responses":
        chars = _content(body.get("instructions")) + _content(body.get("input"))
    else:  # completion, embeddings: one sequence per prompt or input, each must fit on its own
        value = body.get("prompt" if kind == "completion" else "input")
        if isinstance(value, list) and value and not all(isinstance(t, int) for t in value):
            return min(max((_sequence_tokens(v) for v in value), default=0), MAX_COUNT)
        return min(_sequence_tokens(value), MAX_COUNT)
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        chars += len(msgspec.json.encode(tools))  # the schemas are rendered into the prompt
    return min(-(-chars // BYTES_PER_TOKEN), MAX_COUNT)


def needed_context(kind: str, body: dict[str, Any]) -> int:
    """Estimated prompt tokens plus the output tokens the request asks for (``max_tokens`` & co)."""
    need = estimate_prompt_tokens(kind, body)
    if kind != "embeddings":
        asked = [v for f in _MAX_TOKENS_FIELDS if isinstance(v := body.get(f), int) and not isinstance(v, bool)]
        need += max(0, min(max(asked, default=0), MAX_COUNT))
    return need


def holds_context(candidate: Candidate, needed: int) -> bool:
    """Whether ``candidate`` may hold a request needing ``needed`` tokens (an unknown context may)."""
    limit = candidate.context_length
    return not needed or limit is None or limit >= needed


def largest_context(candidates: Sequence[Candidate]) -> int | None:
    """The largest context any of ``candidates`` announced, ``None`` when none did."""
    return max((c.context_length for c in candidates if c.context_length), default=None)
