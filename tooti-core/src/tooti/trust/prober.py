"""The canary prober: the gateway's own spot checks of what nodes serve, off the user's request path.

A background task of the gateway. Every so often it picks a node that is due for a check, and sends
the same deterministic chat request (temperature 0, one seed, a short ``max_tokens``) to it and to
the other live nodes announcing the same model build, through the same :meth:`Network.infer` path
users' requests take. On the wire a canary is an ordinary request: built by the same code as a user's
request from an OpenAI body, a prompt drawn from a large pool (:mod:`tooti.trust.canary_prompts`), a
random request id, streamed or not at random, sent to the nodes at slightly different moments, and at
randomised intervals. Answers are checked (:mod:`tooti.trust.answer_checks`); the outcome moves the
node's standing (:mod:`tooti.trust.standing`) and reputation (:mod:`tooti.trust.reputation`).

Budget: at most ``max_per_minute`` canary requests per minute (a token bucket), at most
:data:`MAX_ROUNDS` rounds and :data:`MAX_PEERS_PER_ROUND` nodes per round at once, and never to a node
that is at its announced capacity. Canary prompts and answers are never logged.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from tooti.errors import BackendError, MalformedResponse
from tooti.gateway.body import parse_body, upstream_request
from tooti.trust.answer_checks import AnswerHistory, CanaryAnswer, outvoted, single_answer_problem
from tooti.trust.canary_prompts import draw_prompt
from tooti.trust.frame_check import FrameCheck
from tooti.wire.infer import ChunkFrame, Done, ErrorFrame, ResultFrame, UsageFrame

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tooti.config.model import VerificationSection
    from tooti.gateway.observations import Observations
    from tooti.network import AdvertisedModel, Network, NodeView
    from tooti.trust.reputation import Reputation
    from tooti.trust.standing import Standings
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["MAX_PEERS_PER_ROUND", "MAX_ROUNDS", "Prober"]

log = logging.getLogger(__name__)

MAX_ROUNDS = 2
MAX_PEERS_PER_ROUND = 5
_FAIL_WEIGHT = 5.0
_PASS_WEIGHT = 1.0
_INCONCLUSIVE_WEIGHT = 0.5


class _Bucket:
    """A token bucket: ``per_minute`` tokens a minute, bursts up to a tenth of that (at least 3)."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(3.0, per_minute / 10.0)
        self.tokens = self.burst
        self._clock = clock
        self._at = clock()

    def take(self, wanted: int) -> int:
        now = self._clock()
        self.tokens = min(self.burst, self.tokens + (now - self._at) * self.rate)
        self._at = now
        got = min(wanted, int(self.tokens))
        self.tokens -= got
        return got


def _text_of(data: dict[str, Any], streamed: bool) -> str:
    parts = []
    for choice in data.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("delta" if streamed else "message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                parts.append(message["content"])
    return "".join(parts)


async def _read_answer(frames: AsyncIterator[ResponseFrame], check: FrameCheck, answer: CanaryAnswer) -> None:
    """Read one answer into ``answer`` (text, usage, or why it is inconclusive or wrong)."""
    texts: list[str] = []
    try:
        async for raw in frames:
            frame = check(raw)
            if isinstance(frame, ChunkFrame | ResultFrame):
                texts.append(_text_of(frame.data, isinstance(frame, ChunkFrame)))
                usage = frame.data.get("usage")
                if isinstance(usage, dict):
                    answer.prompt_tokens = usage.get("prompt_tokens")
                    answer.completion_tokens = usage.get("completion_tokens")
            elif isinstance(frame, UsageFrame) and answer.completion_tokens is None:
                answer.prompt_tokens = frame.prompt_tokens
                answer.completion_tokens = frame.completion_tokens
            elif isinstance(frame, ErrorFrame):
                answer.inconclusive = f"node error {frame.code}"
                return
            elif isinstance(frame, Done):
                return
        answer.problem = "the answer ended without done"
    finally:
        answer.text = "".join(texts)


class Prober:
    """Runs canary rounds until cancelled.

    Args:
        network: the (admission-filtered) network user requests go through.
        section: ``gateway.verification``.
        standings: where outcomes move a node's standing.
        reputation: where outcomes add evidence.
        observations: the gateway's per-node counters (a canary counts as load like any request).
        total_request_sec: the deadline user requests carry (a canary carries the same).
        want_receipt: whether user requests ask for signed receipts (a canary asks the same).
        on_outcome: called with ``(peer_id, "pass" | "fail" | "inconclusive")`` (metrics).
        rng: randomness (tests seed it).
        clock: monotonic clock.
    """

    def __init__(
        self,
        network: Network,
        section: VerificationSection,
        standings: Standings,
        reputation: Reputation,
        observations: Observations | None = None,
        *,
        total_request_sec: float = 300.0,
        want_receipt: bool = False,
        on_outcome: Callable[[str, str], None] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.network = network
        self.section = section
        self.standings = standings
        self.reputation = reputation
        self.observations = observations
        self.total_request_sec = total_request_sec
        self.want_receipt = want_receipt
        self.on_outcome = on_outcome
        self._rng = rng or random.Random()
        self._clock = clock
        self._bucket = _Bucket(section.max_per_minute, clock)
        self.history = AnswerHistory()
        self._busy: set[str] = set()
        self._rounds = 0
        self.sent = 0

    async def run(self) -> None:
        """Check nodes forever (cancel to stop)."""
        async with anyio.create_task_group() as tg:
            while True:
                await anyio.sleep(self._rng.uniform(0.05, 0.25))
                try:
                    round_ = self._plan()
                except Exception as exc:  # a bug here must not end verification for good
                    log.warning("canary planning failed: %s", type(exc).__name__, exc_info=exc)
                    continue
                if round_ is not None:
                    self._rounds += 1
                    tg.start_soon(self._run_round, *round_)

    def _at_capacity(self, node: NodeView) -> bool:
        seen = self.observations.peek(node.peer_id) if self.observations else None
        busy = max(node.in_flight, seen.in_flight if seen else 0)
        return node.capacity is not None and busy >= node.capacity

    def _plan(self) -> tuple[str, list[str]] | None:
        """Pick a due node and the peers to compare it with; ``None`` when nothing is due."""
        if self._rounds >= MAX_ROUNDS:
            return None
        nodes = self.network.nodes()
        if len(nodes) > 2 * len(self.standings.table()) + 64 or self._rng.random() < 0.01:
            live = {n.peer_id for n in nodes}
            self.standings.forget_except(live)
            self.history.forget_except(live)
            self.reputation.forget_except(live)
        free = [n for n in nodes if n.peer_id not in self._busy and n.models and not self._at_capacity(n)]
        due = [n for n in free if self.standings.due(n.peer_id)]
        if not due:
            return None
        target = self._rng.choice(due)
        model: AdvertisedModel = self._rng.choice(target.models)
        others = [
            n.peer_id
            for n in free
            if n.peer_id != target.peer_id and any(m.name == model.name and m.digest == model.digest for m in n.models)
        ]
        self._rng.shuffle(others)
        peers = [target.peer_id, *others[: MAX_PEERS_PER_ROUND - 1]]
        granted = self._bucket.take(len(peers))
        if granted == 0:
            return None
        peers = peers[:granted]
        self._busy.update(peers)
        return model.name, peers

    async def _run_round(self, model: str, peers: list[str]) -> None:
        try:
            prompt = draw_prompt(self._rng)
            seed = self._rng.randint(1, 2**31 - 1)
            answers: list[CanaryAnswer] = []

            async def ask(peer: str, delay: float) -> None:
                await anyio.sleep(delay)
                answers.append(await self._ask(peer, model, prompt, seed))

            async with anyio.create_task_group() as tg:
                for peer in peers:
                    tg.start_soon(ask, peer, self._rng.uniform(0.0, 0.1))
            self._judge(model, prompt, answers)
        finally:
            self._busy.difference_update(peers)
            self._rounds -= 1

    def _request(self, model: str, prompt: str, seed: int) -> InferRequest:
        """The canary, built exactly like a user's request from an OpenAI body."""
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "seed": seed,
            "max_tokens": self.section.max_tokens,
        }
        if self._rng.random() < 0.5:
            body["stream"] = True
        parsed = parse_body(msgspec.json.encode(body), "chat")
        deadline_ms = int((time.time() + self.total_request_sec) * 1000)
        return upstream_request(
            parsed, request_id=f"req-{uuid.uuid4().hex}", deadline_ms=deadline_ms, want_receipt=self.want_receipt
        )

    async def _ask(self, peer: str, model: str, prompt: str, seed: int) -> CanaryAnswer:
        request = self._request(model, prompt, seed)
        answer = CanaryAnswer(peer_id=peer)
        obs = self.observations
        if obs is not None:
            obs.started(peer)
        self.sent += 1
        frames = self.network.infer(peer, request)
        try:
            with anyio.fail_after(self.section.timeout_sec):
                await _read_answer(frames, FrameCheck(peer, "chat"), answer)
        except MalformedResponse as exc:
            answer.problem = exc.message
        except TimeoutError:
            answer.inconclusive = "no answer in time"
        except BackendError as exc:
            answer.inconclusive = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - any other failure says nothing about the answer
            log.warning("canary to %s failed unexpectedly: %s", peer, type(exc).__name__)
            answer.inconclusive = type(exc).__name__
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True), suppress(Exception):
                    await aclose()
            if obs is not None:
                obs.finished(peer)
        return answer

    def _judge(self, model: str, prompt: str, answers: list[CanaryAnswer]) -> None:
        losers = outvoted(answers)
        voters = sum(1 for a in answers if not a.problem and not a.inconclusive)
        for a in answers:
            peer = a.peer_id
            if a.inconclusive:
                self.standings.inconclusive(peer, a.inconclusive)
                self.reputation.bad(peer, _INCONCLUSIVE_WEIGHT)
                self._outcome(peer, "inconclusive")
                continue
            problem = single_answer_problem(a, self.section.max_tokens)
            repeated = self.history.add(peer, prompt, a.text) if problem is None else None
            problem = problem or repeated
            if problem is None and peer in losers:
                problem = f"answer differs from the majority of {voters} nodes serving {model}"
            if problem is None:
                self.standings.passed(peer)
                self.reputation.good(peer, _PASS_WEIGHT)
                self._outcome(peer, "pass")
            else:
                log.warning("node %s failed a canary check for %s: %s; quarantined", peer, model, problem)
                self.standings.failed(peer, problem)
                self.reputation.bad(peer, _FAIL_WEIGHT)
                self._outcome(peer, "fail")

    def _outcome(self, peer: str, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(peer, outcome)
