"""The verdict of one check round: who passed, who failed and why — weighted by earned standing.

Every node of a round got the same deterministic request. Each answer first meets the single-node
checks (:func:`~tooti.trust.answer_checks.single_answer_problem`, the fixed-reply history); the
answers that pass them then vote, and who decides is, in order:

1. **References** (``verification.references``: the operator's own or vetted nodes). When one took
   part, the references' answer is the truth: agreeing passes (confirmed), differing fails. No
   number of other identities outvotes a reference.
2. **Earned weight**: trusted nodes vote with :meth:`Standings.weight` (their confirmed passes,
   capped); new identities weigh nothing. An answer holding a strict majority of the weight is
   the truth, and every voter that differs fails — four fresh keys agreeing on one wrong answer
   cannot outvote one proven node.
3. **Nobody with weight** (a network where nobody has earned any yet): when a reference serves the
   model, nobody is judged by votes — its own checks will decide, and a head count would hand
   the verdict to whoever made the most keys. Otherwise, as a last resort, a strict majority of at
   least two agreeing nodes among at least three outvotes the rest; this head count is Sybil-prone
   and the docs say so (the source-address admission rate bounds how fast keys come).

A pass is *confirmed* (corroborated) when another voice agreed: only confirmed passes promote a node
to trusted or earn it weight. A node alone, or in a round that reached no majority, passes
unconfirmed.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Literal, Protocol

import msgspec

from tooti.trust.answer_checks import answer_key, single_answer_problem

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tooti.trust.answer_checks import AnswerHistory, CanaryAnswer

__all__ = ["RoundVerdict", "Voters", "judge_round", "judge_votes", "screen_answer"]

Outcome = Literal["pass", "fail", "inconclusive"]


class Voters(Protocol):
    """What the round needs to know about the voters (a :class:`~tooti.trust.standing.Standings`)."""

    def weight(self, peer_id: str) -> float:
        """The node's vote: its earned standing (0 for a new identity)."""
        ...

    def is_reference(self, peer_id: str) -> bool:
        """Whether the node is one of the operator's references."""
        ...


class RoundVerdict(msgspec.Struct, frozen=True):
    """One node's verdict in a round."""

    outcome: Outcome
    kind: str
    """A fixed word for metrics: passed, alone, outvoted, reference, fixed_reply, malformed, ..."""
    reason: str
    corroborated: bool = False


def _problem_kind(problem: str) -> str:
    if "fixed reply" in problem:
        return "fixed_reply"
    if "usage" in problem:
        return "usage"
    if "empty" in problem:
        return "empty"
    return "malformed"


def screen_answer(answer: CanaryAnswer, *, prompt: str, max_tokens: int, history: AnswerHistory) -> RoundVerdict | None:
    """The verdict one answer earns on its own (inconclusive, or a definite fault), ``None`` when it may vote.

    Needs no other node: the prober applies it the moment an answer arrives, so a node that lies
    in a way one answer shows (a fixed reply, an impossible usage, a malformed frame) is judged at
    once, whatever the other nodes of its round are still doing. Updates ``history``.
    """
    if answer.inconclusive:
        return RoundVerdict("inconclusive", "inconclusive", answer.inconclusive)
    problem = single_answer_problem(answer, max_tokens)
    if problem is None:
        problem = history.add(answer.peer_id, prompt, answer.text)
    if problem is not None:
        return RoundVerdict("fail", _problem_kind(problem), problem)
    return None


def judge_votes(
    votes: dict[str, str], *, model: str, voters: Voters, reference_serves: bool
) -> dict[str, RoundVerdict]:
    """The verdicts of the answers that passed :func:`screen_answer` (``votes``: peer -> answer key)."""
    if not votes:
        return {}
    refs = {p: k for p, k in votes.items() if voters.is_reference(p)}
    if refs:
        return _by_references(votes, refs, model)
    weights = {p: voters.weight(p) for p in votes}
    total = sum(weights.values())
    if total > 0:
        return _by_weight(votes, weights, total, model)
    if reference_serves:
        why = f"no reference or trusted node answered this check of {model}"
        return {p: RoundVerdict("pass", "alone", why) for p in votes}
    return _by_head_count(votes, model)


def judge_round(
    answers: Sequence[CanaryAnswer],
    *,
    prompt: str,
    model: str,
    max_tokens: int,
    history: AnswerHistory,
    voters: Voters,
    reference_serves: bool,
) -> dict[str, RoundVerdict]:
    """Every answering node's verdict (see the module docstring for the rules).

    :func:`screen_answer` on each answer, then :func:`judge_votes` on those that may vote.

    Args:
        answers: one per node of the round.
        prompt: the round's prompt (for the fixed-reply history).
        model: the model name, for reasons.
        max_tokens: the round's ``max_tokens`` (usage plausibility).
        history: the per-node answer history (updated here).
        voters: weights and references.
        reference_serves: whether a reference node serves this model build at all (then head
            counts never decide).
    """
    out: dict[str, RoundVerdict] = {}
    votes: dict[str, str] = {}
    for a in answers:
        verdict = screen_answer(a, prompt=prompt, max_tokens=max_tokens, history=history)
        if verdict is None:
            votes[a.peer_id] = answer_key(a.text)
        else:
            out[a.peer_id] = verdict
    out.update(judge_votes(votes, model=model, voters=voters, reference_serves=reference_serves))
    return out


def _by_references(votes: dict[str, str], refs: dict[str, str], model: str) -> dict[str, RoundVerdict]:
    key, count = Counter(refs.values()).most_common(1)[0]
    out: dict[str, RoundVerdict] = {}
    if count * 2 <= len(refs):
        why = f"the reference nodes of {model} disagree with each other"
        return {p: RoundVerdict("inconclusive" if p in refs else "pass", "alone", why) for p in votes}
    for peer, k in votes.items():
        if peer in refs:
            if k == key:
                out[peer] = RoundVerdict("pass", "passed", "reference", corroborated=len(refs) > 1)
            else:
                out[peer] = RoundVerdict("inconclusive", "reference", "differs from the other reference nodes")
        elif k == key:
            out[peer] = RoundVerdict("pass", "passed", f"agrees with the reference node for {model}", True)
        else:
            out[peer] = RoundVerdict("fail", "reference", f"answer differs from the reference node's for {model}")
    return out


def _by_weight(votes: dict[str, str], weights: dict[str, float], total: float, model: str) -> dict[str, RoundVerdict]:
    tally: dict[str, float] = {}
    for peer, k in votes.items():
        tally[k] = tally.get(k, 0.0) + weights[peer]
    key = max(tally, key=tally.__getitem__)
    weight = tally[key]
    if weight * 2 <= total:
        why = f"trusted nodes of {model} disagree (no answer holds most of their weight)"
        return {p: RoundVerdict("pass", "alone", why) for p in votes}
    out: dict[str, RoundVerdict] = {}
    for peer, k in votes.items():
        if k == key:
            confirmed = weight - weights[peer] > 0  # someone with weight other than itself agreed
            why = f"agrees with trusted nodes ({weight:.0f} of {total:.0f} earned weight)"
            out[peer] = RoundVerdict("pass", "passed" if confirmed else "alone", why, confirmed)
        else:
            why = f"answer differs from trusted nodes holding {weight:.0f} of {total:.0f} earned weight for {model}"
            out[peer] = RoundVerdict("fail", "outvoted", why)
    return out


def _by_head_count(votes: dict[str, str], model: str) -> dict[str, RoundVerdict]:
    if len(votes) == 1:
        return {p: RoundVerdict("pass", "alone", f"no other node of {model} to compare with") for p in votes}
    key, count = Counter(votes.values()).most_common(1)[0]
    if count == len(votes):
        why = f"agrees with {count - 1} other new node(s) (no trusted node yet)"
        return {p: RoundVerdict("pass", "passed", why, True) for p in votes}
    if len(votes) < 3 or count < 2 or count * 2 <= len(votes):
        why = f"new nodes of {model} disagree and none is trusted yet"
        return {p: RoundVerdict("pass", "alone", why) for p in votes}
    out: dict[str, RoundVerdict] = {}
    for peer, k in votes.items():
        if k == key:
            out[peer] = RoundVerdict("pass", "passed", f"agrees with {count - 1} of {len(votes) - 1} new nodes", True)
        else:
            why = f"answer differs from the majority of {len(votes)} new nodes serving {model} (none trusted yet)"
            out[peer] = RoundVerdict("fail", "outvoted", why)
    return out
