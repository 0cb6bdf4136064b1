"""Whether a node's answer to a user request is what the advertised model could have said.

The audit (:mod:`tooti.trust.organic_audit`) scores the node's answer on a reference, one token
position at a time: the reference gets the user's messages, then the node's answer cut at a word
boundary as a prefilled assistant turn, and returns its top-20 next tokens with their logprobs
(``max_tokens`` 1, temperature 0: one prefill each, cheap with a prompt cache). The node's own
continuation at that cut must start with one of them. This tolerates honest sampling noise at any
temperature (a sampled token is nearly always among the 20 most likely; measured in the benchmark),
needs no shared seed, and is what an answer from another model, a smaller quantisation or a
made-up text fails: their tokens fall outside the reference's top 20 at several positions (the
SN19 validators' rule, token within the reference top-20, in its simplest form).

One token per cut is not enough: right after a word end, the reference's top 20 hold many short
tokens (a letter, a digit), so a made-up word starts within them far too often (measured with
SmolLM2: an evader's hex garbage matched 20 of 24 word-end positions). Each cut is therefore a
*run* of up to :data:`RUN_TOKENS` tokens: the reference's own token that the answer continues with
(:func:`next_token`, the longest one) is added to the prefill and the next position is scored,
so the run walks the reference's tokenisation into the word, where garbage leaves the top 20 at
once (the same garbage: caught at every hex word) and an honest answer stays in (measured: 93 of
93 word-end positions at temperatures 0.7 and 1). Cutting the answer at arbitrary characters
instead does not work: a prefill that ends inside one of the reference's tokens makes honest text
fail too (measured: 92 of 287 mid-word cuts matched).

The same replays count the tokens the node claims: the cut at 0 (no prefill) reports the prompt's
tokens, a prefill of the whole answer reports prompt plus answer, so the difference is the
answer's token count on the reference's own tokenizer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    import random

__all__ = [
    "RUN_TOKENS",
    "TOP_LOGPROBS",
    "PositionScore",
    "ReplayVerdict",
    "cut_points",
    "judge",
    "next_token",
    "scoring_body",
    "top_tokens",
]

TOP_LOGPROBS = 20
"""How many next tokens the reference names per position (the OpenAI API's maximum)."""
RUN_TOKENS = 3
"""Tokens scored from each cut, one replay each; a run stops at its first token outside the top 20."""
BAD_POSITIONS = 2
"""Positions outside the reference's top 20 that fail an audit (one may be a rare honest sample)."""
USAGE_SLACK = 1.25
USAGE_SLACK_TOKENS = 4
"""Claimed tokens above ``checked * USAGE_SLACK + USAGE_SLACK_TOKENS`` are inflated (templates and
tokenisation at the cut differ by a token or two; a x3 inflation is far outside)."""


class PositionScore(msgspec.Struct, kw_only=True, frozen=True):
    """One scored cut of the node's answer."""

    cut: int
    """Characters of the answer prefilled (0 = none)."""
    matched: bool | None
    """Whether the node's continuation starts with one of the reference's top tokens (``None``: the
    reference gave no usable logprobs, the position says nothing)."""
    prompt_tokens: int | None = None
    """The reference's prompt token count for this replay."""


class ReplayVerdict(msgspec.Struct, kw_only=True, frozen=True):
    """The outcome of one audit."""

    outcome: str
    """``pass``, ``fail`` (the answer is not the model's), ``usage`` (inflated token counts),
    ``strike`` (one bad position: suspicious, not proof) or ``inconclusive``."""
    reason: str
    checked: int = 0
    bad: int = 0
    checked_prompt_tokens: int | None = None
    checked_completion_tokens: int | None = None


def cut_points(answer: str, positions: int, rng: random.Random) -> list[int]:
    """0 and up to ``positions - 1`` word ends of ``answer`` picked at random (unpredictable to the node)."""
    ends = [i for i in range(1, len(answer)) if answer[i].isspace() and not answer[i - 1].isspace()]
    picked = rng.sample(ends, min(len(ends), max(0, positions - 1)))
    return [0, *sorted(picked)]


def scoring_body(model: str, messages: list[Any], prefix: str | None) -> dict[str, Any]:
    """The reference's request for one cut: the user's messages, the node's answer up to the cut."""
    msgs = list(messages)
    if prefix:
        msgs.append({"role": "assistant", "content": prefix})
    return {
        "model": model,
        "messages": msgs,
        "max_tokens": 1,
        "temperature": 0,
        "logprobs": True,
        "top_logprobs": TOP_LOGPROBS,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def top_tokens(chunk: dict[str, Any]) -> list[str] | None:
    """The top token texts of the first position a streamed chunk carries logprobs for."""
    for choice in chunk.get("choices") or ():
        if not isinstance(choice, dict):
            continue
        logprobs = choice.get("logprobs")
        content = logprobs.get("content") if isinstance(logprobs, dict) else None
        if not isinstance(content, list) or not content or not isinstance(content[0], dict):
            continue
        tops = content[0].get("top_logprobs")
        if isinstance(tops, list):
            return [t["token"] for t in tops[:TOP_LOGPROBS] if isinstance(t, dict) and isinstance(t.get("token"), str)]
    return None


def next_token(rest: str, tokens: list[str]) -> str | None:
    """The longest of the reference's ``tokens`` that ``rest`` (the answer after the cut) starts with.

    ``rest`` itself when it ends inside one of them (the answer stops mid-token), ``None`` when it
    continues with none of them.
    """
    best: str | None = None
    for tok in tokens:
        if not tok:
            continue  # end of generation, or bytes of a character the server could not print alone
        if rest.startswith(tok):
            if best is None or len(tok) > len(best):
                best = tok
        elif len(rest) < len(tok) and tok.startswith(rest):
            return rest
    return best


def _matches(rest: str, tokens: list[str]) -> bool:
    return next_token(rest, tokens) is not None


def position_score(answer: str, cut: int, tokens: list[str] | None, prompt_tokens: int | None) -> PositionScore:
    """Score the node's continuation of ``answer`` at ``cut`` against the reference's ``tokens``."""
    rest = answer[cut:]
    if tokens is None or not tokens or not rest:
        return PositionScore(cut=cut, matched=None, prompt_tokens=prompt_tokens)
    return PositionScore(cut=cut, matched=_matches(rest, tokens), prompt_tokens=prompt_tokens)


def judge(
    scores: list[PositionScore],
    *,
    full_prompt_tokens: int | None,
    claimed_prompt: int | None,
    claimed_completion: int | None,
) -> ReplayVerdict:
    """The verdict on one audited answer from its scored positions and the node's claimed usage."""
    checked = [s for s in scores if s.matched is not None]
    bad = sum(1 for s in checked if not s.matched)
    base = next((s.prompt_tokens for s in scores if s.cut == 0), None)
    answer_tokens = full_prompt_tokens - base if full_prompt_tokens is not None and base is not None else None
    for claim, truth, what in (
        (claimed_prompt, base, "prompt"),
        (claimed_completion, answer_tokens, "completion"),
    ):
        if claim is not None and truth is not None and claim > truth * USAGE_SLACK + USAGE_SLACK_TOKENS:
            reason = f"usage inflated: claims {claim} {what} tokens, the reference counts {truth}"
            return ReplayVerdict(
                outcome="usage",
                reason=reason,
                checked=len(checked),
                bad=bad,
                checked_prompt_tokens=base,
                checked_completion_tokens=answer_tokens,
            )
    if not checked:
        return ReplayVerdict(
            outcome="inconclusive",
            reason="the reference gave no logprobs",
            checked_prompt_tokens=base,
            checked_completion_tokens=answer_tokens,
        )
    outside = f"token positions outside the reference's top {TOP_LOGPROBS}"
    if bad >= BAD_POSITIONS:
        reason = f"audit of a user request: {bad} of {len(checked)} {outside}"
        return ReplayVerdict(
            outcome="fail",
            reason=reason,
            checked=len(checked),
            bad=bad,
            checked_prompt_tokens=base,
            checked_completion_tokens=answer_tokens,
        )
    if bad:
        reason = (
            f"audit of a user request: 1 of {len(checked)} token positions outside the reference's top {TOP_LOGPROBS}"
        )
        return ReplayVerdict(
            outcome="strike",
            reason=reason,
            checked=len(checked),
            bad=bad,
            checked_prompt_tokens=base,
            checked_completion_tokens=answer_tokens,
        )
    reason = f"audit of a user request: {len(checked)} token positions within the reference's top {TOP_LOGPROBS}"
    return ReplayVerdict(
        outcome="pass",
        reason=reason,
        checked=len(checked),
        bad=0,
        checked_prompt_tokens=base,
        checked_completion_tokens=answer_tokens,
    )
