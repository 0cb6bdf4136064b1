"""What a canary answer proves about a node: checks that need one answer, and the key to compare answers by.

Single-node checks (:func:`single_answer_problem`, :class:`AnswerHistory`): the answer is a
well-formed completion (the frame checks already ran), its usage is plausible for the request (no
more completion tokens than ``max_tokens``, a non-zero prompt), and the node does not give the same
text to different prompts (a fixed reply).

Across nodes, answers are compared by :func:`answer_key`, a normalised prefix: every node claiming
the same model build got the same deterministic request (temperature 0, the same seed and length),
and identical engines on different hardware may drift apart after some tokens. Who decides such a
comparison (references, earned weight, a head count only among new nodes) is
:mod:`tooti.trust.round_verdict`'s.
"""

from __future__ import annotations

from collections import deque

import msgspec

__all__ = ["AnswerHistory", "CanaryAnswer", "answer_key", "single_answer_problem"]

PREFIX_CHARS = 48
"""Answers are compared on this many normalised characters."""
FIXED_TEXT_PROMPTS = 3
"""The same answer to this many distinct prompts marks a fixed reply."""


class CanaryAnswer(msgspec.Struct, kw_only=True):
    """One node's answer to one canary, reduced to what the checks need (kept in memory only)."""

    peer_id: str
    text: str = ""
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    problem: str | None = None
    """A definite failure found while reading the answer (malformed frame, wrong shape)."""
    inconclusive: str | None = None
    """Why the answer says nothing (timeout, unreachable, busy); neither pass nor fail."""


def answer_key(text: str) -> str:
    """The normalised prefix answers are compared on (case and whitespace ignored)."""
    return " ".join(text.lower().split())[:PREFIX_CHARS]


def single_answer_problem(answer: CanaryAnswer, max_tokens: int) -> str | None:
    """A reason the answer is wrong on its own, or ``None``."""
    if answer.problem:
        return answer.problem
    if not answer.text.strip():
        return "empty answer to a canary"
    if answer.completion_tokens is not None and answer.completion_tokens > max_tokens + 1:
        return f"usage claims {answer.completion_tokens} completion tokens for max_tokens {max_tokens}"
    if answer.prompt_tokens is not None and answer.prompt_tokens <= 0:
        return "usage claims an empty prompt"
    return None


class AnswerHistory:
    """The last few (prompt, answer) keys of each node, to spot a node that answers everything alike."""

    def __init__(self, depth: int = 6) -> None:
        self._depth = depth
        self._seen: dict[str, deque[tuple[str, str]]] = {}

    def add(self, peer_id: str, prompt: str, text: str) -> str | None:
        """Record an answer; return a problem when it repeats the answer to other prompts."""
        seen = self._seen.setdefault(peer_id, deque(maxlen=self._depth))
        key = answer_key(text)
        seen.append((prompt, key))
        prompts = {p for p, k in seen if k == key}
        if key and len(prompts) >= FIXED_TEXT_PROMPTS:
            return f"the same answer to {len(prompts)} different prompts (a fixed reply)"
        return None

    def forget_except(self, live: set[str]) -> None:
        """Drop nodes that left."""
        for peer in [p for p in self._seen if p not in live]:
            del self._seen[peer]
