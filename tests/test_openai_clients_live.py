"""The official openai SDK through a ``tooti up``-like network, against the real llama.cpp server.

The gateway runs in-process over libp2p (as ``tooti up`` runs it), the node is a real
``tooti node start`` child process, and the node fronts the session's llama.cpp fixture, so the
test can read that server's ``/slots`` directly: a slot's ``is_processing`` says whether generation
is still running, which is how cancellation is proven (the issue's ``curl --max-time 1`` case).

Assertions are on shapes, counts and timing, never on the generated text.
"""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from tooti.gateway.launcher import LocalUp, NodeProcess, node_config
from tooti.testing import eventually

pytestmark = pytest.mark.live

START_TIMEOUT = 120.0
LONG = 900  # tokens of the generations a client abandons
STOP_WITHIN_S = 1.0  # after the client is gone, the model server must stop this fast
STORY = [{"role": "user", "content": "Write a very long story about the sea."}]


@pytest.fixture(scope="module")
def network(llama_server, tmp_path_factory):
    """Gateway (in-process, libp2p) + one node process in front of the llama.cpp fixture."""
    workdir = tmp_path_factory.mktemp("up")
    # No canaries: test_client_disconnect_stops_generation reads llama.cpp's activity, which a
    # canary running at that moment would look like.
    stack = LocalUp(llama_server.model_path, port=0, workdir=workdir, verification=False)
    try:
        bootstrap = stack.start_gateway()
        config = node_config(bootstrap, workdir, base_url=llama_server.base_url, heartbeat_sec=0.5)
        stack.node = NodeProcess.spawn(config, workdir, "node")
        stack.wait_ready(START_TIMEOUT)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def model(network) -> str:
    with httpx.Client(base_url=network.base_url, timeout=10) as http:
        return str(http.get("/v1/models").json()["data"][0]["id"])


@pytest.fixture
def client(network):
    with openai.OpenAI(base_url=f"{network.base_url}/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c


def _busy_slots(llama_url: str) -> int:
    return sum(1 for s in httpx.get(f"{llama_url}/slots", timeout=5).json() if s.get("is_processing"))


def _wait_idle(llama_url: str, limit_s: float) -> float:
    """Seconds until no slot of the llama.cpp server is processing (``inf`` if not within ``limit_s``)."""
    t0 = time.monotonic()
    try:
        eventually(lambda: _busy_slots(llama_url) == 0, timeout=limit_s, interval=0.02)
    except AssertionError:
        return float("inf")
    return time.monotonic() - t0


# -- Responses API -------------------------------------------------------------------------------


def test_responses_create(client, model):
    r = client.responses.create(model=model, input="Name one colour.", max_output_tokens=8)
    assert r.object == "response"
    assert r.status in ("completed", "incomplete")
    assert isinstance(r.output_text, str)
    assert r.output_text
    assert 0 < r.usage.output_tokens <= 8


def test_responses_stream_through_completed(client, model):
    events = list(client.responses.create(model=model, input="Name one colour.", max_output_tokens=8, stream=True))
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created"
    # As OpenAI does: an answer cut by max_output_tokens ends in response.incomplete, saying why.
    assert kinds[-1] in ("response.completed", "response.incomplete")
    if kinds[-1] == "response.incomplete":
        assert events[-1].response.incomplete_details.reason == "max_output_tokens"
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas
    assert events[-1].response.output_text == "".join(deltas)


def test_responses_stream_helper_accumulates_the_answer(client, model):
    """The SDK's ``responses.stream()`` helper, which rebuilds the response from every event's indices.

    llama.cpp's own Responses stream leaves ``output_index``/``content_index`` out, so this helper
    fails against it directly (TypeError in the SDK); tooti translates through chat instead.
    """
    with client.responses.stream(model=model, input="Name one colour.", max_output_tokens=8) as stream:
        events = list(stream)  # the helper accumulates a snapshot from each event as it goes
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert deltas
    final = events[-1]
    # (get_final_response() accepts only response.completed; an answer cut by max_output_tokens ends
    # in response.incomplete, as OpenAI's own does.)
    assert final.type in ("response.completed", "response.incomplete")
    assert final.response.output_text == "".join(deltas)


@pytest.mark.anyio
async def test_responses_async(network, model):
    async with openai.AsyncOpenAI(base_url=f"{network.base_url}/v1", api_key="unused", max_retries=0) as client:
        whole = await client.responses.create(model=model, input="Say hi.", max_output_tokens=4)
        stream = await client.responses.create(model=model, input="Say hi.", max_output_tokens=4, stream=True)
        kinds = [event.type async for event in stream]
    assert whole.output_text
    assert kinds[0] == "response.created"
    assert kinds[-1] in ("response.completed", "response.incomplete")  # incomplete: cut by max_output_tokens


@pytest.mark.parametrize(
    ("extra", "param"), [({"previous_response_id": "resp_1"}, "previous_response_id"), ({"store": True}, "store")]
)
def test_stateful_responses_are_refused_clearly(client, model, extra, param):
    with pytest.raises(openai.BadRequestError) as err:
        client.responses.create(model=model, input="hi", max_output_tokens=4, **extra)
    assert err.value.body["param"] == param
    assert "stateless" in err.value.body["message"]


# -- legacy completions, embeddings -------------------------------------------------------------------


def test_completions_stream_one_event_per_token(client, model):
    n = 32
    t0 = time.monotonic()
    arrivals = []
    for chunk in client.completions.create(
        model=model, prompt="Once upon a time", max_tokens=n, stream=True, extra_body={"ignore_eos": True}
    ):
        if chunk.choices and chunk.choices[0].text:
            arrivals.append(time.monotonic() - t0)
    assert len(arrivals) >= n  # at least one event per generated token
    # Token by token, not one chunk at the end: the events are spread over the generation
    # (32 tokens take ~0.3 s here; a whole answer relayed at once arrives within a few ms).
    assert arrivals[-1] - arrivals[0] > 0.05


@pytest.mark.anyio
async def test_completions_stream_and_embeddings_async(network, model):
    async with openai.AsyncOpenAI(base_url=f"{network.base_url}/v1", api_key="unused", max_retries=0) as client:
        stream = await client.completions.create(model=model, prompt="Hello", max_tokens=4, stream=True)
        texts = [c.choices[0].text async for c in stream if c.choices]
        vectors = (await client.embeddings.create(model=model, input=["a", "b"])).data
    assert any(texts)
    assert [len(v.embedding) for v in vectors] == [576, 576]


def test_embeddings(client, model):
    vectors = client.embeddings.create(model=model, input="hello").data
    assert len(vectors) == 1
    assert len(vectors[0].embedding) == 576


# -- cancellation ------------------------------------------------------------------------------------


def _abandon(network, path: str, body: dict, *, stream: bool) -> None:
    """Send ``body`` and give up after 1 s, like ``curl --max-time 1``; returns once the client left."""
    t0 = time.monotonic()
    try:
        with httpx.Client(base_url=network.base_url, timeout=httpx.Timeout(1.0)) as http:
            if not stream:
                http.post(path, json=body)
                pytest.fail("a 900-token answer came back within 1 s")
            with http.stream("POST", path, json=body) as response:
                assert response.status_code == 200
                for _ in response.iter_bytes():
                    if time.monotonic() - t0 >= 1.0:
                        break
    except httpx.TimeoutException:
        pass


def _next_request_speed(client, model) -> float:
    t0 = time.monotonic()
    client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=5)
    return time.monotonic() - t0


@pytest.mark.parametrize(
    ("path", "body", "stream"),
    [
        ("/v1/chat/completions", {"messages": STORY, "max_tokens": LONG, "ignore_eos": True}, False),
        (
            "/v1/completions",
            {"prompt": "Once upon a time", "max_tokens": LONG, "ignore_eos": True, "stream": True},
            True,
        ),
        ("/v1/responses", {"input": STORY, "max_output_tokens": LONG, "ignore_eos": True, "stream": True}, True),
    ],
    ids=["chat-non-stream", "completion-stream", "responses-stream"],
)
def test_client_disconnect_stops_generation(network, llama_server, client, model, path, body, stream):
    assert _wait_idle(llama_server.base_url, 30) < 30, "llama.cpp busy before the test"
    _abandon(network, path, {"model": model, **body}, stream=stream)
    stopped_after = _wait_idle(llama_server.base_url, 30)
    assert stopped_after <= STOP_WITHIN_S, f"llama.cpp still generating {stopped_after:.2f} s after the client left"
    assert _next_request_speed(client, model) < 3.0
