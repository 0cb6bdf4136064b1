"""The prober's rounds against a scripted network: slow nodes hold up nobody, busy claims spare nobody.

Unit level (no sockets): the network and the sender are scripted so the timing is exact. The real
adversaries (a lying model server behind a real node, under load) are in
``tests/test_trust_adversaries_llamacpp.py``; these pin the two rules those tests depend on.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tooti.config.model import VerificationSection
from tooti.errors import MalformedResponse, StreamEnded
from tooti.network import AdvertisedModel, NodeView
from tooti.trust.prober import Prober
from tooti.trust.reputation import Reputation
from tooti.trust.standing import Standings
from tooti.wire.infer import Done, ResultFrame

if TYPE_CHECKING:
    from tooti.wire.frame_sink import FrameSink
    from tooti.wire.infer import InferRequest

pytestmark = pytest.mark.anyio

MODEL = AdvertisedModel(name="m", digest="d")
FIXED = "Always the same words."


class ScriptedNetwork:
    """Nodes as announced; only :meth:`nodes` is used by the prober."""

    def __init__(self, views: list[NodeView]) -> None:
        self.views = views

    def nodes(self) -> list[NodeView]:
        return self.views


def _result(text: str) -> list[Any]:
    data = {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9},
    }
    return [ResultFrame(data=data), Done()]


def _prober(views: list[NodeView], delays: dict[str, float], liar: str) -> tuple[Prober, Standings, list[str]]:
    section = VerificationSection(first_check_wait_sec=0, timeout_sec=30)
    reputation = Reputation(section.reputation_half_life_sec)
    standings = Standings(section, reputation.score, rng=random.Random(1))
    asked: list[str] = []

    async def send(peer: str, request: InferRequest, sink: FrameSink, timeout_s: float) -> str | None:
        asked.append(peer)
        await anyio.sleep(delays.get(peer, 0.0))
        # Honest nodes agree with each other (their text depends on the request only); the liar does not.
        text = FIXED if peer == liar else f"honest answer to {hash(str(request.body)) % 1000}"
        await sink.take(_result(text))
        return None

    prober = Prober(ScriptedNetwork(views), send, section, standings, reputation, rng=random.Random(2))  # type: ignore[arg-type]
    return prober, standings, asked


async def _run_until(prober: Prober, done: Any, limit: float) -> float:
    started = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(prober.run)
        with anyio.move_on_after(limit):
            while not done():
                await anyio.sleep(0.02)
        tg.cancel_scope.cancel()
    return anyio.current_time() - started


async def test_a_slow_node_in_a_round_does_not_hold_up_the_fixed_reply_verdict_on_a_fast_one():
    # Two honest nodes that take 20 s (busy behind users) and a liar that answers at once.
    views = [NodeView(peer_id=p, models=(MODEL,), capacity=4) for p in ("h1", "h2", "liar")]
    prober, standings, asked = _prober(views, {"h1": 20.0, "h2": 20.0}, liar="liar")
    took = await _run_until(prober, lambda: standings.state("liar") == "quarantined", limit=15.0)
    assert standings.state("liar") == "quarantined", standings.get("liar").reason
    assert "fixed reply" in standings.get("liar").reason
    assert took < 10.0, took  # while the honest nodes' first answers were still 10+ s away
    assert asked.count("h1") == 1  # one canary in flight per node
    assert asked.count("h2") == 1


async def test_a_node_claiming_to_be_at_capacity_is_checked_until_trusted():
    # The liar announces every slot busy in every heartbeat; the gateway has nothing in flight there.
    views = [
        NodeView(peer_id="h1", models=(MODEL,), capacity=4),
        NodeView(peer_id="liar", models=(MODEL,), capacity=2, in_flight=2),
    ]
    prober, standings, asked = _prober(views, {}, liar="liar")
    await _run_until(prober, lambda: standings.state("liar") == "quarantined", limit=15.0)
    assert "liar" in asked
    assert standings.state("liar") == "quarantined", standings.get("liar").reason


@pytest.mark.parametrize(
    ("raised", "standing", "kind"),
    [
        (StreamEnded("stream from cut ended without done"), "probation", "inconclusive"),  # a restart mid-answer
        (MalformedResponse("chunk does not look like an OpenAI chunk"), "quarantined", "malformed"),
    ],
)
async def test_a_stream_cut_short_is_inconclusive_a_malformed_one_a_fault(raised, standing, kind):
    views = [NodeView(peer_id="cut", models=(MODEL,), capacity=4)]
    section = VerificationSection(first_check_wait_sec=0)
    reputation = Reputation(section.reputation_half_life_sec)
    standings = Standings(section, reputation.score, rng=random.Random(1))

    async def send(peer: str, request: InferRequest, sink: FrameSink, timeout_s: float) -> str | None:
        raise raised

    prober = Prober(ScriptedNetwork(views), send, section, standings, reputation, rng=random.Random(2))  # type: ignore[arg-type]
    await _run_until(prober, lambda: standings.get("cut").checks or standings.get("cut").kind != "new", limit=5.0)
    assert standings.state("cut") == standing
    assert standings.get("cut").kind == kind


def test_a_trusted_nodes_busy_claim_spares_it_only_until_its_check_is_long_overdue():
    view = NodeView(peer_id="t", models=(MODEL,), capacity=2, in_flight=2)
    prober, standings, _ = _prober([view], {}, liar="nobody")
    record = standings.get("t")
    record.state = "trusted"
    now = time.monotonic()
    record.next_check = now + 5.0  # not due: its claim is believed
    assert prober._at_capacity(view)
    record.next_check = now - prober.section.timeout_sec - 1.0  # overdue past timeout_sec: checked anyway
    assert not prober._at_capacity(view)
    record.state = "probation"
    record.next_check = now + 5.0  # not trusted: the claim alone never spares it
    assert not prober._at_capacity(view)


async def test_a_newcomer_is_checked_only_in_a_round_the_reference_takes_part_in():
    # One reference that takes 1 s to answer and six identities of one operator that agree with each
    # other instantly. Rounds run three at once and hold five nodes each, so on the previous prober
    # the identities left out of the reference's round were checked against each other and passed
    # unconfirmed; a round without a voter must wait for one instead.
    sybils = [f"s{i}" for i in range(6)]
    views = [NodeView(peer_id=p, models=(MODEL,), capacity=4) for p in ("ref", *sybils)]
    section = VerificationSection(first_check_wait_sec=0, timeout_sec=30, references=("ref",))
    reputation = Reputation(section.reputation_half_life_sec)
    standings = Standings(section, reputation.score, rng=random.Random(1))
    rounds: dict[str, set[str]] = {}

    async def send(peer: str, request: InferRequest, sink: FrameSink, timeout_s: float) -> str | None:
        key = f"{request.body['messages'][-1]['content']} {request.body['seed']}"  # the round's, not the request's
        rounds.setdefault(key, set()).add(peer)
        await anyio.sleep(1.0 if peer == "ref" else 0.0)
        text = f"reference answer to {hash(key) % 1000}" if peer == "ref" else f"sybil answer to {hash(key) % 1000}"
        await sink.take(_result(text))
        return None

    prober = Prober(ScriptedNetwork(views), send, section, standings, reputation, rng=random.Random(2))  # type: ignore[arg-type]
    await _run_until(prober, lambda: all(standings.state(s) == "quarantined" for s in sybils), limit=15.0)
    assert all(standings.state(s) == "quarantined" for s in sybils), {s: standings.get(s).reason for s in sybils}
    without_reference = [sorted(peers) for peers in rounds.values() if "ref" not in peers]
    assert not without_reference, without_reference
