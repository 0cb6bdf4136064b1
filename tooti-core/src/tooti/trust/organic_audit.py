"""Audits of real user requests: the check a node cannot tell from the traffic it serves.

Canaries (:mod:`tooti.trust.prober`) are the gateway's own requests, and whatever shapes them, a node
that has read this code may learn to spot them and answer only those honestly. An audit needs no
request of its own: the gateway keeps, for a random share of the user requests a node answered, the
request and the answer it relayed, and afterwards scores that answer on a *reference*
(:mod:`tooti.trust.replay_check`). The node has already answered, and signed a receipt over the
answer's hash (:mod:`tooti.wire.answer_digest`), before anything about the audit happens; nothing on
its wire differs between an audited request and any other.

* **Which requests**: chat requests with plain-text messages, no tools, one choice and a
  temperature of at most 1 (hotter sampling leaves the reference's top tokens too often to be
  judged fairly). A node is audited at ``audit_new_share`` until it has passed ``audit_new_passes``
  audits or after a strike, then at ``audit_share``; references are never audited.
* **Who replays**: a reference node (``verification.references``) serving the model, else a trusted
  node with earned weight whose own user answers passed an audit, else (a network's first audits)
  one trusted by canaries alone (never the audited node). A failure found by a node that is not a
  configured reference is confirmed by a second one before it counts, so one dishonest trusted
  node cannot frame an honest one; without a second, it counts as a strike if the node that found
  it has passed an audit itself, and as nothing if it is trusted by canaries alone.
* A replaying node's token count is its word like its tokens: a usage verdict found by a node
  that is not a reference is confirmed the same way (measured: without it, an evader that was
  trusted answered the replays with its own made-up usage and both honest nodes were quarantined
  for "inflated" counts).
* **Verdicts**: a fail (two or more positions outside the reference's top 20, a receipt that
  commits to another answer, or usage claims above the reference's count) quarantines the node;
  one bad position is a strike, and two strikes among its last five audits quarantine it too. A
  pass counts as a confirmed check for the node's standing. Every verdict is in the node's
  standing (``/v1/network/nodes``, ``tooti network peers``) and in ``tooti_gateway_audits``.
* **Routing**: a passed audit is what lets a trusted node take a full share of users
  (:meth:`tooti.trust.standing.Standings.routable`, with ``audit_new_share`` above 0).
* **Cost**: at most :data:`MAX_QUEUED` answers wait (:data:`_PER_PEER_QUEUED` of one node), at most
  :data:`MAX_AUDITS` are scored at once, each ``audit_positions`` runs of up to
  :data:`~tooti.trust.replay_check.RUN_TOKENS` one-token replays (the runs at once) + 1. Prompts
  and answers are kept in memory only until scored and never logged; the replays send the user's
  messages to the replaying node.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections import deque
from contextlib import suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from tooti.errors import BackendError, MalformedResponse
from tooti.trust.frame_check import FrameCheck
from tooti.trust.replay_check import (
    RUN_TOKENS,
    PositionScore,
    ReplayVerdict,
    cut_points,
    judge,
    next_token,
    scoring_body,
    top_tokens,
)
from tooti.wire.answer_digest import AnswerDigest
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, InferRequest, ResultFrame, UsageFrame
from tooti.wire.receipt import ReceiptFrame

if TYPE_CHECKING:
    from collections.abc import Callable

    from tooti.config.model import VerificationSection
    from tooti.network import Network
    from tooti.trust.reputation import Reputation
    from tooti.trust.standing import Standings
    from tooti.wire.infer import ResponseFrame

__all__ = ["MAX_AUDITS", "MAX_QUEUED", "OrganicAudit"]


class Observations(Protocol):
    """The part of the gateway's per-node counters a replay uses (trust does not import the gateway)."""

    def started(self, peer_id: str) -> None: ...
    def finished(self, peer_id: str) -> None: ...


class Completion(Protocol):
    """The part of the gateway's per-request completion an audit reads."""

    @property
    def request_id(self) -> str: ...
    @property
    def peer_id(self) -> str | None: ...
    @property
    def status(self) -> str: ...


log = logging.getLogger(__name__)

MAX_QUEUED = 64
MAX_AUDITS = 2
_MAX_PENDING = 512
"""Sampled requests still being answered (a sample whose completion never comes is dropped past it)."""
_PER_PEER_QUEUED = 8
"""Answers of one node that may wait at once: a fast node cannot crowd the others' audits out."""
_WAIT_FOR_REFERENCE_SEC = 120.0
"""How long an answer waits for someone to score it (a network's first minutes have no trusted node)."""
_STRIKES = 2
_RECENT_AUDITS = 5
_MAX_TEMPERATURE = 1.0
_FAIL_WEIGHT = 5.0
_PASS_WEIGHT = 1.0


@dataclass(slots=True)
class _Sample:
    """One sampled attempt: the request and what the node sent back."""

    request: InferRequest
    peer_id: str
    digest: AnswerDigest = field(default_factory=AnswerDigest)
    usage: UsageFrame | None = None
    result_usage: dict[str, Any] | None = None
    receipt: ReceiptFrame | None = None
    at: float = field(default_factory=time.monotonic)

    def see(self, frame: ResponseFrame) -> None:
        self.digest.see(frame)
        if isinstance(frame, UsageFrame):
            self.usage = frame
        elif isinstance(frame, ResultFrame):
            usage = frame.data.get("usage")
            self.result_usage = usage if isinstance(usage, dict) else None
        elif isinstance(frame, ReceiptFrame) and self.receipt is None:
            self.receipt = frame

    def claimed(self) -> tuple[int | None, int | None]:
        if self.usage is not None:
            return self.usage.prompt_tokens, self.usage.completion_tokens
        u = self.result_usage or {}
        p, c = u.get("prompt_tokens"), u.get("completion_tokens")
        return (p if isinstance(p, int) else None), (c if isinstance(c, int) else None)


@dataclass(slots=True)
class _Record:
    """What the audits said about one node (in memory; the verdicts themselves go to its standing)."""

    passed: int = 0
    failed: int = 0
    started: int = 0
    recent: deque[str] = field(default_factory=lambda: deque(maxlen=_RECENT_AUDITS))
    last: str = ""


def auditable(request: InferRequest) -> bool:
    """Whether a request can be scored on a reference (plain-text chat, one choice, temperature <= 1)."""
    if request.kind != "chat":
        return False
    body = request.body
    if body.get("tools") or body.get("functions") or body.get("n") not in (None, 1):
        return False
    temperature = body.get("temperature")
    if temperature is not None and (not isinstance(temperature, int | float) or temperature > _MAX_TEMPERATURE):
        return False
    messages = body.get("messages")
    return isinstance(messages, list) and all(
        isinstance(m, dict) and isinstance(m.get("content"), str) for m in messages
    )


class OrganicAudit:
    """Samples answered user requests and scores them on references.

    Args:
        section: ``gateway.verification``.
        network: the network user requests go through (the replays take the same path).
        standings: where verdicts move a node's standing.
        reputation: where verdicts add evidence.
        observations: the gateway's per-node counters (a replay counts as load like any request).
        total_request_sec: the deadline a replay carries.
        want_receipt: whether requests ask for receipts (a replay asks the same).
        on_outcome: called with ``(peer_id, outcome)`` for metrics.
        rng: randomness for sampling and cut points (tests seed it).
    """

    def __init__(
        self,
        section: VerificationSection,
        network: Network,
        standings: Standings,
        reputation: Reputation,
        observations: Observations | None = None,
        *,
        total_request_sec: float = 300.0,
        want_receipt: bool = False,
        on_outcome: Callable[[str, str], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.section = section
        self.network = network
        self.standings = standings
        self.reputation = reputation
        self.observations = observations
        self.total_request_sec = total_request_sec
        self.want_receipt = want_receipt
        self.on_outcome = on_outcome
        self._rng = rng or random.SystemRandom()
        self._pending: dict[tuple[str, str], _Sample] = {}
        self._queue: deque[_Sample] = deque()
        self._records: dict[str, _Record] = {}
        self.outcomes: dict[str, int] = {}
        """Audits by outcome (pass, fail, usage, strike, inconclusive, dropped, no_reference)."""
        self.replays = 0
        """Replay requests sent to references (each one token)."""
        self.sampled = 0

    @property
    def enabled(self) -> bool:
        """Whether any share of user traffic is audited."""
        return self.section.audit_share > 0 or self.section.audit_new_share > 0

    def share(self, peer_id: str) -> float:
        """The audit share of ``peer_id``'s requests now."""
        r = self._records.get(peer_id)
        if r is None or r.passed < self.section.audit_new_passes or "strike" in r.recent:
            return self.section.audit_new_share
        return self.section.audit_share

    def _count(self, outcome: str) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    # -- request path (synchronous, cheap) ------------------------------------------------------

    def frame_check(self, request: InferRequest, peer_id: str) -> Callable[[ResponseFrame], None] | None:
        """Per attempt: decide (at random, unseen by the node) whether to keep this answer for an audit."""
        if self.standings.is_reference(peer_id) or self._rng.random() >= self.share(peer_id):
            return None
        if not auditable(request) or len(self._pending) >= _MAX_PENDING:
            return None
        sample = self._pending[(request.request_id, peer_id)] = _Sample(request, peer_id)
        return sample.see

    def completed(self, completion: Completion) -> None:
        """Per client request: queue the kept answer of the node that answered it, if the answer was whole."""
        if not self._pending:
            return
        for key in [k for k in self._pending if k[0] == completion.request_id]:
            sample = self._pending.pop(key)
            if completion.status != "ok" or sample.peer_id != completion.peer_id or not sample.digest.text().strip():
                continue
            if len(self._queue) >= MAX_QUEUED or self._queued_of(sample.peer_id) >= _PER_PEER_QUEUED:
                self._count("dropped")
                continue
            self.sampled += 1
            self._queue.append(sample)

    # -- audits (background) --------------------------------------------------------------------

    async def run(self) -> None:
        """Score queued answers until cancelled."""
        limiter = anyio.CapacityLimiter(MAX_AUDITS)

        async def one(sample: _Sample) -> None:
            async with limiter:
                try:
                    await self._audit(sample)
                except Exception as exc:  # a bug in one audit must not end auditing
                    log.warning("audit of %s failed unexpectedly: %s", sample.peer_id, type(exc).__name__, exc_info=exc)

        async with anyio.create_task_group() as tg:
            while True:
                sample = self._next_ready() if limiter.borrowed_tokens < MAX_AUDITS else None
                if sample is not None:
                    tg.start_soon(one, sample)
                    await anyio.sleep(0)
                else:
                    await anyio.sleep(0.05)

    def _queued_of(self, peer_id: str) -> int:
        return sum(1 for s in self._queue if s.peer_id == peer_id)

    def _next_ready(self) -> _Sample | None:
        """The queued answer to score next: of the node audited least so far, the oldest someone can score.

        Least-audited first: a node's first audit decides whether it may take more than a
        probation share of users (:meth:`Standings.routable`), so a new node waits for no queue of
        another's answers. An answer waits while nobody can score it (no reference and no trusted
        node yet, as in a network's first seconds): those first answers are the ones a node that
        lies from the start gives. Answers nobody could score in time are dropped.
        """
        now = time.monotonic()
        best: _Sample | None = None
        best_rank = 0
        for sample in list(self._queue):
            if self.standings.state(sample.peer_id) == "quarantined":
                self._queue.remove(sample)
            elif self._references(sample, {sample.peer_id}):
                record = self._records.get(sample.peer_id)
                rank = record.started if record is not None else 0
                if best is None or rank < best_rank:
                    best, best_rank = sample, rank
            elif now - sample.at > _WAIT_FOR_REFERENCE_SEC:
                self._queue.remove(sample)
                self._count("no_reference")
        if best is not None:
            self._queue.remove(best)
            self._records.setdefault(best.peer_id, _Record()).started += 1
        return best

    def _references(self, sample: _Sample, exclude: set[str]) -> list[str]:
        """Who may score ``sample``: configured references serving the model, else trusted nodes with weight."""
        model = sample.request.model
        serving = [n.peer_id for n in self.network.nodes() if model in n.serves() and n.peer_id not in exclude]
        refs = [p for p in serving if self.standings.is_reference(p)]
        if refs:
            return refs
        voters = [p for p in serving if self.standings.state(p) == "trusted" and self.standings.weight(p) >= 1.0]
        # A node whose user answers passed an audit has shown more than canaries can; until one has
        # (a network's first audits), nodes trusted by canaries alone score each other.
        return [p for p in voters if self.standings.get(p).audited] or voters

    async def _audit(self, sample: _Sample) -> None:
        peer = sample.peer_id
        if self.standings.state(peer) == "quarantined":
            return
        answer = sample.digest.text()
        receipt = sample.receipt.receipt if sample.receipt is not None else None
        if receipt is not None and receipt.answer is not None and receipt.answer != sample.digest.hexdigest():
            self._apply(peer, ReplayVerdict(outcome="fail", reason="its signed receipt commits to another answer"))
            return
        refs = self._references(sample, {peer})
        if not refs:
            self._count("no_reference")
            return
        first = self._rng.choice(refs)
        verdict = await self._score(first, sample, answer)
        if verdict.outcome in ("fail", "strike", "usage") and not self.standings.is_reference(first):
            others = [p for p in self._references(sample, {peer, first}) if p != first]
            if not others and self.standings.get(first).audited:
                verdict = ReplayVerdict(outcome="strike", reason=verdict.reason + " (one trusted node's word)")
            elif not others:
                # Trusted by canaries alone, which a canary evader is too: its unconfirmed word is
                # no strike (measured: two such strikes quarantined an honest node in a live run).
                verdict = ReplayVerdict(outcome="inconclusive", reason="a fault only an unaudited node saw")
            else:
                second = await self._score(self._rng.choice(others), sample, answer)
                if second.outcome not in ("fail", "strike", "usage"):
                    log.warning("audit of %s: %s found a fault another node did not confirm", peer, first)
                    verdict = ReplayVerdict(outcome="inconclusive", reason="two trusted nodes disagree")
        if verdict.outcome == "fail" and not self.standings.is_reference(first):
            # Scored by nodes, not a reference: honest nodes of one model give the same logprobs, so
            # the second scorer confirms an honest answer's rare miss as readily as the first. A
            # strike, then: a second one among the node's last audits quarantines it (in CI, one
            # confirmed fail of an honest node's sampled answer quarantined it).
            verdict = ReplayVerdict(outcome="strike", reason=verdict.reason + " (scored without a reference)")
        self._apply(peer, verdict)

    async def _score(self, reference: str, sample: _Sample, answer: str) -> ReplayVerdict:
        messages = list(sample.request.body.get("messages") or [])
        model = sample.request.model
        # The cuts are independent: their runs go at once, so an audit takes about one run's
        # replays, not all of them in a row (measured on a loaded 2-core host: a replay took up to
        # ~1.8 s, and 13 in a row let only 2 audits finish in a 40 s window).
        cuts = cut_points(answer, self.section.audit_positions, self._rng)
        results: dict[int, PositionScore] = {}
        whole: list[int | None] = [None]

        async def run(cut: int) -> None:
            results[cut] = await self._score_run(reference, model, messages, answer, cut)

        async def count_whole() -> None:
            _, whole[0] = await self._replay(reference, model, messages, answer)

        async with anyio.create_task_group() as tg:
            for cut in cuts:
                tg.start_soon(run, cut)
            tg.start_soon(count_whole)
        if results[0].prompt_tokens is None:
            return ReplayVerdict(outcome="inconclusive", reason="the reference did not answer the replay")
        scores = [results[cut] for cut in cuts]
        full = whole[0]
        claimed_prompt, claimed_completion = sample.claimed()
        return judge(
            scores, full_prompt_tokens=full, claimed_prompt=claimed_prompt, claimed_completion=claimed_completion
        )

    async def _score_run(self, reference: str, model: str, messages: list[Any], answer: str, cut: int) -> PositionScore:
        """Score up to :data:`RUN_TOKENS` tokens of ``answer`` from ``cut``, walking the reference's tokens.

        The position fails at the first token outside the reference's top 20; it says nothing
        (``matched`` None) when the reference gave no logprobs at the cut itself; a run the
        reference stops answering mid-way keeps what it showed.
        """
        pos, matched, first_prompt_tokens = cut, None, None
        for step in range(RUN_TOKENS):
            tokens, prompt_tokens = await self._replay(reference, model, messages, answer[:pos])
            if step == 0:
                first_prompt_tokens = prompt_tokens
            rest = answer[pos:]
            if not tokens or not rest:
                break
            token = next_token(rest, tokens)
            if token is None:
                if not rest[0].isascii():
                    break  # a character the server may print only with the next token: not judged
                matched = False
                break
            matched = True
            pos += len(token)
            if pos >= len(answer):
                break
        return PositionScore(cut=cut, matched=matched, prompt_tokens=first_prompt_tokens)

    async def _replay(
        self, reference: str, model: str, messages: list[Any], prefix: str
    ) -> tuple[list[str] | None, int | None]:
        """One scoring replay on ``reference``: its top next tokens and its prompt token count."""
        request = InferRequest(
            request_id=f"req-{uuid.uuid4().hex}",
            model=model,
            kind="chat",
            stream=True,
            body=scoring_body(model, messages, prefix),
            deadline_ms=int((time.time() + self.total_request_sec) * 1000),
            want_receipt=self.want_receipt,
        )
        obs = self.observations
        if obs is not None:
            obs.started(reference)
        self.replays += 1
        tokens: list[str] | None = None
        prompt_tokens: int | None = None
        check = FrameCheck(reference, "chat")
        frames = self.network.infer(reference, request)
        try:
            with anyio.fail_after(self.section.timeout_sec):
                async for raw in frames:
                    frame = check(raw)
                    if isinstance(frame, ChunkFrame):
                        if tokens is None:
                            tokens = top_tokens(frame.data)
                        usage = frame.data.get("usage")
                        if isinstance(usage, dict) and isinstance(usage.get("prompt_tokens"), int):
                            prompt_tokens = usage["prompt_tokens"]
                    elif isinstance(frame, UsageFrame):
                        prompt_tokens = frame.prompt_tokens
                    elif isinstance(frame, ErrorFrame | Done):
                        break
        except (TimeoutError, BackendError, MalformedResponse) as exc:
            log.info("audit replay on %s said nothing: %s: %s", reference, type(exc).__name__, exc)
            return None, None
        finally:
            # Shielded so a cancelled audit still releases the stream, bounded so a stuck close
            # cannot hold up the gateway's shutdown.
            with anyio.move_on_after(5.0, shield=True), suppress(Exception):
                aclose = getattr(frames, "aclose", None)
                if aclose is not None:
                    await aclose()
            if obs is not None:
                obs.finished(reference)
        return tokens, prompt_tokens

    def _apply(self, peer: str, verdict: ReplayVerdict) -> None:
        r = self._records.setdefault(peer, _Record())
        outcome = verdict.outcome
        if outcome == "strike":
            strikes = sum(1 for o in r.recent if o == "strike") + 1
            if strikes >= _STRIKES:
                verdict = ReplayVerdict(
                    outcome="fail", reason=f"{verdict.reason}; {strikes} strikes in its last audits"
                )
                outcome = "fail"
        r.recent.append(outcome)
        r.last = verdict.reason
        self._count(verdict.outcome)
        if outcome in ("fail", "usage"):
            r.failed += 1
            log.warning("node %s failed an audit of a user request: %s; quarantined", peer, verdict.reason)
            self.standings.failed(peer, verdict.reason, "usage" if outcome == "usage" else "audit")
            self.reputation.bad(peer, _FAIL_WEIGHT)
        elif outcome == "pass":
            r.passed += 1
            self.standings.passed(peer, corroborated=True, reason=verdict.reason)
            self.standings.audit_passed(peer)
            self.reputation.good(peer, _PASS_WEIGHT)
        if self.on_outcome is not None:
            self.on_outcome(peer, outcome)

    def describe(self, peer_id: str) -> dict[str, Any]:
        """The node's audit fields for ``/v1/network/nodes``."""
        r = self._records.get(peer_id)
        if r is None:
            return {"audits_passed": 0, "audits_failed": 0}
        return {"audits_passed": r.passed, "audits_failed": r.failed, "last_audit": r.last}
