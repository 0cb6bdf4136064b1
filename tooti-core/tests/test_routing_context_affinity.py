"""Routing inputs read from the request: the context it needs (issue 24 item 2), the prefix it shares (item 3).

Unit tests of the estimate, the eligibility predicate and the affinity table, then the gateway over
in-process fake nodes: requests skip nodes whose context cannot hold them and get 400
``context_length_exceeded`` naming both numbers when none can; consecutive turns of a conversation
follow the node that served the previous one, unless its load is too high, and ``x-tooti-route``
says so.
"""

from __future__ import annotations

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from tooti.config.model import AffinitySection, Config, GatewaySection, RoutingSection, VerificationSection
from tooti.gateway import create_app
from tooti.network import AdvertisedModel
from tooti.node.local import LocalNetwork
from tooti.routing import Candidate, Decision, Preferences, eligible
from tooti.routing.affinity import PrefixAffinity, prefix_keys
from tooti.routing.context_fit import BYTES_PER_TOKEN, estimate_prompt_tokens, holds_context, needed_context
from tooti.routing.explain import exclusion_reason
from tooti.testing import FakeBackend, make_plugin_host

SYSTEM = "You are a coding agent. Follow the rules below exactly. " * 80  # ~4.5 KB, like an agent's preamble


# -- the estimate ---------------------------------------------------------------------------------


def test_the_estimate_counts_the_text_the_model_reads() -> None:
    text = "word " * 600  # 3,000 characters
    body = {"messages": [{"role": "user", "content": text}]}
    assert estimate_prompt_tokens("chat", body) == -(-3000 // BYTES_PER_TOKEN)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64," + "A" * 600_000}}
    with_image = {"messages": [{"role": "user", "content": [{"type": "text", "text": text}, image]}]}
    assert estimate_prompt_tokens("chat", with_image) == estimate_prompt_tokens("chat", body)  # image data is no text
    spaces = {"messages": [{"role": "user", "content": "a" + " " * 100_000 + "b"}]}
    assert estimate_prompt_tokens("chat", spaces) == 1  # a whitespace run is one character
    assert estimate_prompt_tokens("completion", {"prompt": list(range(700))}) == 700  # token ids count exactly
    assert estimate_prompt_tokens("embeddings", {"input": ["short", text]}) == 500  # the longest input
    assert (
        estimate_prompt_tokens("chat", {**body, "tools": [{"type": "function", "function": {"name": "x" * 600}}]}) > 500
    )
    assert needed_context("chat", {**body, "max_tokens": 1000}) == 1500
    assert needed_context("chat", {**body, "max_tokens": "many"}) == 500  # the node refuses a bad value itself
    assert needed_context("embeddings", {"input": text, "max_tokens": 9}) == 500
    responses = {"instructions": text, "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}]}
    assert estimate_prompt_tokens("responses", responses) == 1000


def test_the_estimate_stays_below_real_token_counts() -> None:
    """SmolLM2's tokenizer (llama.cpp /tokenize) counted these; the estimate must not be above them."""
    measured = {  # characters -> tokens, from the measurement in tooti.routing.context_fit's docstring
        "docs": (20_000, 6245),
        "python": (8248, 2267),
        "json_tools": (9650, 2541),
        "repeated_phrase": (4800, 801),
    }
    for chars, tokens in measured.values():
        assert -(-chars // BYTES_PER_TOKEN) <= tokens


# -- the predicate --------------------------------------------------------------------------------


def _cand(peer: str, context: int | None, **kw: object) -> Candidate:
    return Candidate(peer_id=peer, models=frozenset({"m"}), context_length=context, **kw)  # type: ignore[arg-type]


def test_eligibility_skips_nodes_whose_context_is_too_small() -> None:
    pool = [_cand("small", 1024), _cand("big", 8192), _cand("unknown", None)]
    prefs = Preferences(model="m", context_tokens=2000)
    assert [c.peer_id for c in eligible(pool, prefs)] == ["big", "unknown"]
    assert exclusion_reason(pool[0], prefs) is not None
    assert exclusion_reason(pool[1], prefs) is None
    assert [c.peer_id for c in eligible(pool, Preferences(model="m"))] == ["small", "big", "unknown"]
    assert holds_context(pool[0], 1024)
    assert not holds_context(pool[0], 1025)


# -- the affinity table ---------------------------------------------------------------------------


def _turns(n: int) -> list[dict[str, object]]:
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM}]
    bodies = []
    for i in range(n):
        messages.append({"role": "user", "content": f"step {i}: read file {i}.py and fix the bug " * 5})
        bodies.append({"model": "m", "messages": list(messages)})
        messages.append({"role": "assistant", "content": f"I read {i}.py; the bug is on line {i}. " * 8})
    return bodies


def _keys(body: dict[str, object]) -> tuple[int, ...]:
    return prefix_keys("chat", "m", body, chunk_bytes=1024, max_prefix_bytes=64 * 1024)


def test_a_later_turn_shares_the_earlier_turns_keys() -> None:
    first, second, third = (_keys(b) for b in _turns(3))
    assert len(first) >= 4
    assert second[: len(first)] == first
    assert third[: len(second)] == second
    other = _keys({"model": "m", "messages": [{"role": "system", "content": "another agent " * 400}]})
    assert not set(other) & set(first)
    assert _keys({"model": "m", "messages": [{"role": "user", "content": "hi"}]}) == ()  # too short to matter
    assert prefix_keys("embeddings", "m", {"input": SYSTEM}, chunk_bytes=1024, max_prefix_bytes=65536) == ()
    assert prefix_keys("chat", "other-model", _turns(1)[0], chunk_bytes=1024, max_prefix_bytes=65536) != first


def test_lookup_finds_the_longest_prefix_and_the_table_stays_bounded() -> None:
    table = PrefixAffinity(table_size=50)
    a, b = _keys(_turns(1)[0]), _keys(_turns(3)[2])
    table.remember(a, "node-a")
    assert table.lookup(b) == ("node-a", len(a))
    table.remember(b, "node-b")
    assert table.lookup(b) == ("node-b", len(b))
    for i in range(100):
        table.remember((i, i + 10_000), f"n{i}")
    assert len(table.table) == 50


def _decision(*cands: Candidate) -> Decision:
    return Decision(ordered=cands, strategy="test", reasons=("from the strategy",))


def test_prefer_moves_the_holder_first_within_the_load_bound() -> None:
    keys = _keys(_turns(2)[1])
    table = PrefixAffinity(load_ratio=1.5, load_margin=1)
    table.remember(keys, "b")
    prefs = Preferences(model="m", prefix_keys=keys)
    chosen = table.prefer(_decision(_cand("a", None), _cand("b", None, in_flight=1)), prefs)
    assert [c.peer_id for c in chosen.ordered] == ["b", "a"]
    assert chosen.reasons[0].startswith("affinity: b holds")
    assert chosen.reasons[0].endswith("chosen")
    busy = table.prefer(_decision(_cand("a", None), _cand("b", None, in_flight=2)), prefs)
    assert [c.peer_id for c in busy.ordered] == ["a", "b"]
    assert "not preferred: load 2 above the bound 1" in busy.reasons[0]
    loaded = table.prefer(_decision(_cand("a", None, in_flight=4), _cand("b", None, in_flight=6)), prefs)
    assert [c.peer_id for c in loaded.ordered] == ["b", "a"]  # 6 <= 1.5 x 4
    free = table.prefer(_decision(_cand("a", None, capacity=4), _cand("b", None, in_flight=3, capacity=4)), prefs)
    assert [c.peer_id for c in free.ordered] == ["b", "a"]  # a free slot: nothing to wait for there
    cooling = table.prefer(_decision(_cand("a", None), _cand("b", None, cooling=True)), prefs)
    assert [c.peer_id for c in cooling.ordered] == ["a", "b"]
    assert table.prefer(_decision(_cand("a", None)), Preferences(model="m")).reasons == ("from the strategy",)


# -- through the gateway ---------------------------------------------------------------------------


def _network(contexts: dict[str, int | None]) -> tuple[LocalNetwork, dict[str, FakeBackend]]:
    network = LocalNetwork()
    backends = {}
    for peer, context in contexts.items():
        backend = FakeBackend(models=("m",))
        network.add_node(peer, backend, [msgspec.structs.replace(_model(), context_length=context)])
        backends[peer] = backend
    return network, backends


def _model() -> AdvertisedModel:
    return AdvertisedModel(name="m", backend="fake")


def _chat(content: str, **kw: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **kw}


@pytest.mark.anyio
@pytest.mark.parametrize("stream", [False, True])
async def test_requests_skip_nodes_whose_context_is_too_small(stream: bool) -> None:
    network, backends = _network({"small": 1024, "big": 8192})
    # No canaries: the test asserts the small node is sent nothing, and a canary (short, so it fits
    # the small context) goes to every new node before its first user request.
    config = Config(gateway=GatewaySection(verification=VerificationSection(enabled=False)))
    app = create_app(config, network, make_plugin_host())
    async with AsyncTestClient(app) as client:
        for _ in range(6):
            r = await client.post("/v1/chat/completions", json=_chat("word " * 4000, max_tokens=100, stream=stream))
            assert r.status_code == 200, r.text
            assert r.headers["x-tooti-node"] == "big"
        assert not backends["small"].calls
        r = await client.post("/v1/chat/completions", json=_chat("hi", max_tokens=8))
        assert r.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", _chat("word " * 60_000)),
        ("/v1/chat/completions", _chat("word " * 60_000, stream=True)),
        ("/v1/completions", {"model": "m", "prompt": "word " * 60_000}),
        ("/v1/completions", {"model": "m", "prompt": "word " * 60_000, "stream": True}),
        ("/v1/embeddings", {"model": "m", "input": "word " * 60_000}),
        ("/v1/responses", {"model": "m", "input": "word " * 60_000}),
        ("/v1/responses", {"model": "m", "input": "word " * 60_000, "stream": True}),
        ("/v1/chat/completions", _chat("hello", max_tokens=20_000)),
    ],
)
async def test_no_node_can_hold_it_is_context_length_exceeded(path: str, body: dict[str, object]) -> None:
    network, backends = _network({"small": 1024, "big": 8192})
    # No canaries: the test asserts the small node is sent nothing, and a canary (short, so it fits
    # the small context) goes to every new node before its first user request.
    config = Config(gateway=GatewaySection(verification=VerificationSection(enabled=False)))
    app = create_app(config, network, make_plugin_host())
    async with AsyncTestClient(app) as client:
        r = await client.post(path, json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "context_length_exceeded"
    assert error["type"] == "invalid_request_error"
    assert "maximum context length is 8192 tokens" in error["message"]
    assert "estimated" in error["message"]
    estimate = needed_context(
        {"/v1/chat/completions": "chat", "/v1/completions": "completion", "/v1/embeddings": "embeddings"}.get(
            path, "responses"
        ),
        {k: v for k, v in body.items() if k != "stream"},
    )
    assert f"{estimate} tokens" in error["message"]
    assert not any(b.calls for b in backends.values())


@pytest.mark.anyio
async def test_consecutive_turns_follow_the_node_that_served_the_previous_one() -> None:
    network, _ = _network({"n1": None, "n2": None, "n3": None})
    # Verification off: with it, whichever node the prober had not trusted yet was held back on
    # probation and affinity (rightly) yielded (seen once in CI, on a loaded machine).
    no_checks = Config(gateway=GatewaySection(verification=VerificationSection(enabled=False)))
    app = create_app(no_checks, network, make_plugin_host())
    async with AsyncTestClient(app) as client:
        for conversation in range(6):
            first = f"n{conversation % 3 + 1}"
            for turn, turn_body in enumerate(_turns(4)):
                system = {"role": "system", "content": f"agent {conversation}. {SYSTEM}"}
                body = {**turn_body, "messages": [system, *turn_body["messages"][1:]]}
                prefs = {"tooti": {"only": [first]}} if turn == 0 else {}
                r = await client.post("/v1/chat/completions", json={**body, **prefs}, headers={"x-tooti-debug": "1"})
                assert r.status_code == 200, r.text
                assert r.headers["x-tooti-node"] == first, (conversation, turn, r.headers.get("x-tooti-route"))
                if turn:
                    assert f"affinity: {first} holds" in r.headers["x-tooti-route"]


@pytest.mark.anyio
async def test_affinity_yields_to_load_and_can_be_turned_off() -> None:
    network, _ = _network({"n1": None, "n2": None})
    no_checks = Config(gateway=GatewaySection(verification=VerificationSection(enabled=False)))
    app = create_app(no_checks, network, make_plugin_host())
    turn1, turn2 = _turns(2)
    async with AsyncTestClient(app) as client:
        r = await client.post("/v1/chat/completions", json={**turn1, "tooti": {"only": ["n2"]}})
        assert r.headers["x-tooti-node"] == "n2"
        network.update_node("n2", queued=5)
        r = await client.post("/v1/chat/completions", json=turn2, headers={"x-tooti-debug": "1"})
        assert r.headers["x-tooti-node"] == "n1"
        assert "affinity: n2 holds" in r.headers["x-tooti-route"]
        assert "not preferred: load 5" in r.headers["x-tooti-route"]

    off = Config(routing=RoutingSection(affinity=AffinitySection(enabled=False)))
    network, _ = _network({"n1": None, "n2": None})
    app = create_app(off, network, make_plugin_host())
    async with AsyncTestClient(app) as client:
        await client.post("/v1/chat/completions", json={**turn1, "tooti": {"only": ["n2"]}})
        r = await client.post("/v1/chat/completions", json=turn2, headers={"x-tooti-debug": "1"})
        assert "affinity" not in r.headers.get("x-tooti-route", "")
