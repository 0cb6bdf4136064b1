"""The canary prober: the gateway's own spot checks of what nodes serve, off the user's request path.

A background task of the gateway. Every so often it picks a node that is due for a check, and sends
the same deterministic chat request (temperature 0, one seed, a short ``max_tokens``) to it and to
the other live nodes announcing the same model build, through the same :meth:`Network.infer` path
users' requests take. On the wire a canary is an ordinary request: built by the same code as a user's
request from an OpenAI body (:mod:`tooti.wire.request_body`), a prompt drawn from a large pool
(:mod:`tooti.trust.canary_prompts`), a random request id, streamed or not at random, sent to the nodes
at slightly different moments, and at randomised intervals. It is sent and read by the gateway's
node attempt, the same code as user traffic (a :data:`CanarySender` the gateway passes in, see
:func:`tooti.gateway.attempt.canary_sender`): the same timeouts, the same preamble hold-back, the same
stream reset when the prober stops reading. Answers are checked (:mod:`tooti.trust.answer_checks`);
the outcome moves the node's standing (:mod:`tooti.trust.standing`) and reputation (:mod:`tooti.trust.reputation`).

Budget: at most ``max_per_minute`` canary requests per minute (a token bucket), at most
:data:`MAX_ROUNDS` rounds and :data:`MAX_PEERS_PER_ROUND` nodes per round at once, one canary in
flight per node, and the node checked is never one at its announced capacity (a voter compared
with a newcomer may be: see :meth:`Prober._plan`). Canary prompts and answers are never logged.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

import anyio

from tooti.errors import BackendError, BackendTimeout, MalformedResponse, StreamEnded
from tooti.trust.answer_checks import AnswerHistory, CanaryAnswer, answer_key
from tooti.trust.canary_prompts import draw_prompt
from tooti.trust.round_verdict import RoundVerdict, judge_votes, screen_answer
from tooti.wire.infer import ChunkFrame, Done, ResultFrame, UsageFrame
from tooti.wire.request_body import read_body, upstream_request

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from tooti.config.model import VerificationSection
    from tooti.network import AdvertisedModel, Network, NodeView
    from tooti.trust.reputation import Reputation
    from tooti.trust.standing import Standings
    from tooti.wire.frame_sink import FrameSink
    from tooti.wire.infer import InferRequest, ResponseFrame

__all__ = ["MAX_PEERS_PER_ROUND", "MAX_ROUNDS", "CanarySender", "NodeLoad", "Prober"]

CanarySender: TypeAlias = "Callable[[str, InferRequest, FrameSink, float], Awaitable[str | None]]"
"""Sends a canary ``(peer_id, request, sink, timeout_s)`` the way user requests are sent, handing the
checked frames to ``sink``. Returns ``None`` once the answer was read whole, or the code of the error
frame the node sent instead (a node's own error says nothing about its answers); raises
:class:`~tooti.errors.BackendError` when the attempt failed otherwise."""


class _InFlight(Protocol):
    @property
    def in_flight(self) -> int: ...


class NodeLoad(Protocol):
    """What the prober reads of the gateway's per-node counters: requests in flight per node.

    Declared here so trust names no gateway type; the gateway's ``Observations`` is one.
    """

    def peek(self, peer_id: str) -> _InFlight | None:
        """The node's counters, ``None`` when the gateway has sent it nothing."""
        ...


log = logging.getLogger(__name__)

MAX_ROUNDS = 3
MAX_PEERS_PER_ROUND = 5
_FAIL_WEIGHT = 5.0
_PASS_WEIGHT = 1.0
_INCONCLUSIVE_WEIGHT = 0.5
_ALONE_WEIGHT = 0.25
"""A pass nobody confirmed earns little: a node answering every prompt differently passes alone."""


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


def _serves(node: NodeView, model: AdvertisedModel) -> bool:
    """Whether ``node`` announces exactly ``model`` (same name and digest: same weights, same answers)."""
    return any(m.name == model.name and m.digest == model.digest for m in node.models)


def _text_of(data: dict[str, Any], streamed: bool) -> str:
    parts = []
    for choice in data.get("choices") or ():
        if isinstance(choice, dict):
            message = choice.get("delta" if streamed else "message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                parts.append(message["content"])
    return "".join(parts)


class _CanaryRecord:
    """The :class:`~tooti.wire.frame_sink.FrameSink` of one canary: its text and the usage it reports."""

    __slots__ = ("answer", "texts")

    def __init__(self, answer: CanaryAnswer) -> None:
        self.answer = answer
        self.texts: list[str] = []

    async def take(self, frames: list[ResponseFrame]) -> bool:
        answer = self.answer
        for frame in frames:
            if isinstance(frame, ChunkFrame | ResultFrame):
                self.texts.append(_text_of(frame.data, isinstance(frame, ChunkFrame)))
                usage = frame.data.get("usage")
                if isinstance(usage, dict):
                    answer.prompt_tokens = usage.get("prompt_tokens")
                    answer.completion_tokens = usage.get("completion_tokens")
            elif isinstance(frame, UsageFrame) and answer.completion_tokens is None:
                answer.prompt_tokens = frame.prompt_tokens
                answer.completion_tokens = frame.completion_tokens
            elif isinstance(frame, Done):
                return True
        return False

    async def broken(self, error: BackendError) -> None:
        """Nothing to end: the error is the prober's to judge."""


class Prober:
    """Runs canary rounds until cancelled.

    Args:
        network: the (admission-filtered) network user requests go through.
        send: how a canary is sent: the gateway's node attempt, as for user requests.
        section: ``gateway.verification``.
        standings: where outcomes move a node's standing.
        reputation: where outcomes add evidence.
        observations: the gateway's per-node counters (to spare nodes at capacity; the node attempt
            counts a canary as load like any request).
        total_request_sec: the deadline user requests carry (a canary carries the same).
        want_receipt: whether user requests ask for signed receipts (a canary asks the same).
        on_outcome: called with ``(peer_id, "pass" | "fail" | "inconclusive")`` (metrics).
        rng: randomness (tests seed it).
        clock: monotonic clock.
    """

    def __init__(
        self,
        network: Network,
        send: CanarySender,
        section: VerificationSection,
        standings: Standings,
        reputation: Reputation,
        observations: NodeLoad | None = None,
        *,
        total_request_sec: float = 300.0,
        want_receipt: bool = False,
        on_outcome: Callable[[str, str], None] | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.network = network
        self.send = send
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
        """Whether a check would overload the node, by what this gateway sees and what may be believed.

        The gateway's own count of what it has in flight there always counts. The node's own claim
        (its heartbeat's ``in_flight``) counts only once it is trusted and only while its check is
        not long overdue: a claim of being busy costs nothing to make, and a liar that always makes
        it must not escape its checks (a lying server that forwards a real server's ``/slots`` does).
        """
        if node.capacity is None:
            return False
        seen = self.observations.peek(node.peer_id) if self.observations else None
        busy = seen.in_flight if seen else 0
        peer = node.peer_id
        if self.standings.state(peer) == "trusted" and self.standings.overdue(peer) < self.section.timeout_sec:
            busy = max(busy, node.in_flight)
        return busy >= node.capacity

    def _voter(self, peer_id: str) -> bool:
        """Whether the node's answer can decide a check: a reference, or a trusted node."""
        return self.standings.is_reference(peer_id) or self.standings.state(peer_id) == "trusted"

    def _plan(self) -> tuple[str, list[str]] | None:
        """Pick a due node and the peers to compare it with; ``None`` when nothing is due.

        The node checked is never one at capacity. The peers compared with it are idle nodes and,
        when the node checked is not trusted yet, voters (references, trusted nodes) even at
        capacity: honest voters kept busy by users must still take part, else a newcomer that
        answers instantly is checked only against other newcomers and passes unconfirmed. For the
        same reason a node not trusted yet is not checked while every voter for its model is in
        another round: the check waits (other due nodes go first) rather than being spent on a
        round that cannot confirm anything.
        """
        if self._rounds >= MAX_ROUNDS:
            return None
        nodes = self.network.nodes()
        if len(nodes) > 2 * len(self.standings.table()) + 64 or self._rng.random() < 0.01:
            live = {n.peer_id for n in nodes}
            self.standings.forget_except(live)
            self.history.forget_except(live)
            self.reputation.forget_except(live)
        held = self.standings.held
        free = [n for n in nodes if n.peer_id not in self._busy and n.models and not held(n.peer_id)]
        idle = {n.peer_id for n in free if not self._at_capacity(n)}
        due = [n for n in free if n.peer_id in idle and self.standings.due(n.peer_id)]
        if not due:
            return None
        first = [n for n in due if n.peer_id in self.standings.awaiting]  # new nodes are verified first
        rest = [n for n in due if n.peer_id not in self.standings.awaiting]
        self._rng.shuffle(first)
        self._rng.shuffle(rest)
        for target in (*first, *rest):
            model: AdvertisedModel = self._rng.choice(target.models)
            unproven = self.standings.state(target.peer_id) != "trusted"
            others = [
                n.peer_id
                for n in free
                if n.peer_id != target.peer_id
                and self.standings.state(n.peer_id) != "quarantined"  # its answer decides nothing
                and (n.peer_id in idle or (unproven and self._voter(n.peer_id)))
                and _serves(n, model)
            ]
            if unproven and not any(map(self._voter, others)) and self._voter_elsewhere(nodes, target, model):
                # Every voter for this model is in another round right now. A round without one can
                # only pass unconfirmed (newcomers compared with newcomers: a Sybil's own identities
                # agree), so the check waits for a voter to be free instead of being spent.
                continue
            self._rng.shuffle(others)
            # References decide, then trusted nodes by earned weight: the strongest voices first.
            others.sort(key=lambda p: (not self.standings.is_reference(p), -self.standings.weight(p)))
            peers = [target.peer_id, *others[: MAX_PEERS_PER_ROUND - 1]]
            granted = self._bucket.take(len(peers))
            if granted == 0:
                return None
            peers = peers[:granted]
            self._busy.update(peers)
            return model.name, peers
        return None

    def _voter_elsewhere(self, nodes: list[NodeView], target: NodeView, model: AdvertisedModel) -> bool:
        """Whether a live voter other than ``target`` serves ``model`` (and so will be free to decide)."""
        held = self.standings.held
        return any(
            n.peer_id != target.peer_id
            and self._voter(n.peer_id)
            and self.standings.state(n.peer_id) != "quarantined"
            and not held(n.peer_id)
            and _serves(n, model)
            for n in nodes
        )

    async def _run_round(self, model: str, peers: list[str]) -> None:
        """One round: the same request to every peer, each answer screened as it arrives, then the vote.

        A peer is free for other rounds as soon as its own answer is in, and an answer that shows a
        fault on its own is judged at once: one slow node in a round (a busy honest node, or one
        that stalls on purpose) holds up neither the checks of the fast ones nor their verdicts.
        """
        pending = set(peers)
        try:
            prompt = draw_prompt(self._rng)
            seed = self._rng.randint(1, 2**31 - 1)
            votes: dict[str, str] = {}

            async def ask(peer: str, delay: float) -> None:
                try:
                    await anyio.sleep(delay)
                    answer = await self._ask(peer, model, prompt, seed)
                finally:
                    pending.discard(peer)
                    self._busy.discard(peer)
                verdict = screen_answer(answer, prompt=prompt, max_tokens=self.section.max_tokens, history=self.history)
                if verdict is None:
                    votes[peer] = answer_key(answer.text)
                else:
                    self._apply(peer, model, verdict)

            async with anyio.create_task_group() as tg:
                for peer in peers:
                    tg.start_soon(ask, peer, self._rng.uniform(0.0, 0.1))
            self._judge(model, votes)
        finally:
            self._busy.difference_update(pending)
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
        parsed = read_body(body, "chat")
        deadline_ms = int((time.time() + self.total_request_sec) * 1000)
        return upstream_request(
            parsed, request_id=f"req-{uuid.uuid4().hex}", deadline_ms=deadline_ms, want_receipt=self.want_receipt
        )

    async def _ask(self, peer: str, model: str, prompt: str, seed: int) -> CanaryAnswer:
        request = self._request(model, prompt, seed)
        answer = CanaryAnswer(peer_id=peer)
        record = _CanaryRecord(answer)
        self.sent += 1
        try:
            code = await self.send(peer, request, record, self.section.timeout_sec)
            if code is not None:
                answer.inconclusive = f"node error {code}"
        except StreamEnded:
            answer.inconclusive = "the stream ended before the answer did"
        except MalformedResponse as exc:
            answer.problem = exc.message
        except BackendTimeout:
            answer.inconclusive = "no answer in time"
        except BackendError as exc:
            answer.inconclusive = type(exc).__name__
        except Exception as exc:  # noqa: BLE001 - any other failure says nothing about the answer
            log.warning("canary to %s failed unexpectedly: %s", peer, type(exc).__name__)
            answer.inconclusive = type(exc).__name__
        finally:
            answer.text = "".join(record.texts)
        return answer

    def _judge(self, model: str, votes: dict[str, str]) -> None:
        reference_serves = any(
            self.standings.is_reference(n.peer_id) and any(m.name == model for m in n.models)
            for n in self.network.nodes()
        ) if self.standings.references else False  # fmt: skip
        verdicts = judge_votes(votes, model=model, voters=self.standings, reference_serves=reference_serves)
        for peer, v in verdicts.items():
            self._apply(peer, model, v)

    def _apply(self, peer: str, model: str, v: RoundVerdict) -> None:
        if v.outcome == "inconclusive":
            self.standings.inconclusive(peer, v.reason)
            self.reputation.bad(peer, _INCONCLUSIVE_WEIGHT)
        elif v.outcome == "pass":
            self.standings.passed(peer, corroborated=v.corroborated, reason=v.reason)
            self.reputation.good(peer, _PASS_WEIGHT if v.corroborated else _ALONE_WEIGHT)
        else:
            log.warning("node %s failed a canary check for %s: %s; quarantined", peer, model, v.reason)
            self.standings.failed(peer, v.reason, v.kind)
            self.reputation.bad(peer, _FAIL_WEIGHT)
        self._outcome(peer, v.outcome)

    def _outcome(self, peer: str, outcome: str) -> None:
        if self.on_outcome is not None:
            self.on_outcome(peer, outcome)
