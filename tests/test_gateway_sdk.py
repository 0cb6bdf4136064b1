"""The official openai SDK against the gateway served by uvicorn (LocalNetwork + FakeBackend nodes).

Checks what hand-made HTTP cannot: that the SDK parses our shapes, raises the right exception class
for each status, and raises on the mid-stream error event instead of returning a short answer.
"""

from __future__ import annotations

import openai
import pytest

from tooti.config.model import Config, GatewaySection, VerificationSection
from tooti.errors import UpstreamError
from tooti.gateway import create_app
from tooti.gateway.api_keys import hash_key
from tooti.gateway.server import ServerThread
from tooti.node.local import LocalNetwork
from tooti.testing import FakeBackend, eventually, make_plugin_host

MESSAGES = [{"role": "user", "content": "Say hello."}]
KEY = "tk_sdk_test"


@pytest.fixture
def backends():
    return {"peerA": FakeBackend(chunks=6), "peerB": FakeBackend(chunks=6)}


@pytest.fixture
def gateway(backends):
    network = LocalNetwork()
    for peer, backend in backends.items():
        network.add_node(peer, backend, ["fake-model"])
    # No canaries: the tests read what the backends were sent.
    section = GatewaySection(
        auth_mode="optional",
        api_key_hashes=[hash_key(KEY)],
        rate_limit_rpm=600,
        verification=VerificationSection(enabled=False),
    )
    config = Config(gateway=section)
    server = ServerThread(create_app(config, network, make_plugin_host()))
    url = server.start()
    yield url
    server.stop()


@pytest.fixture
def client(gateway):
    with openai.OpenAI(base_url=f"{gateway}/v1", api_key=KEY, max_retries=0, timeout=30) as c:
        yield c


def test_models_list(client):
    assert [m.id for m in client.models.list()] == ["fake-model"]


def test_chat_non_stream_usage(client):
    r = client.chat.completions.create(model="fake-model", messages=MESSAGES, max_tokens=8)
    assert r.choices[0].message.role == "assistant"
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(
        model="fake-model", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1
    assert usage[0].completion_tokens == 6
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) == 6


def test_raw_headers(client):
    raw = client.chat.completions.with_raw_response.create(model="fake-model", messages=MESSAGES)
    assert raw.headers["x-tooti-node"] in ("peerA", "peerB")
    assert raw.headers["x-request-id"]
    assert float(raw.headers["x-tooti-overhead-ms"]) >= 0


def test_sdk_error_classes(client, gateway):
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="fake-model", messages=[])
    assert bad.value.body["param"] == "messages"
    with (
        openai.OpenAI(base_url=f"{gateway}/v1", api_key="wrong", max_retries=0) as wrong,
        pytest.raises(openai.AuthenticationError),
    ):
        wrong.models.list()


def test_mid_stream_failure_raises_in_the_sdk(client, backends):
    for b in backends.values():
        b.fail_with(UpstreamError("node died"), after_chunks=3)
    stream = client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    got = []

    def consume():
        got.extend(stream)

    with pytest.raises(openai.APIError, match="mid-stream"):
        consume()
    assert len(got) == 3


def test_client_disconnect_cancels_the_node_stream(client, backends):
    for b in backends.values():
        b.chunk_delay_sec = 0.2
    stream = client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    next(iter(stream))
    stream.close()
    eventually(lambda: sum(b.closed_early for b in backends.values()) > 0, timeout=10)
    assert sum(b.closed_early for b in backends.values()) == 1


def test_responses_translated_for_a_backend_without_a_responses_api(client, backends):
    """FakeBackend has no native /v1/responses: the node translates to chat and back, the SDK parses it."""
    whole = client.responses.create(model="fake-model", input="Say hello.", instructions="Be brief.")
    assert whole.object == "response"
    assert whole.output_text
    assert whole.usage.output_tokens == 6
    events = list(client.responses.create(model="fake-model", input="Say hello.", stream=True))
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.count("response.output_text.delta") == 6  # one per token
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[-1].response.output_text == whole.output_text
    sent = [c.body for b in backends.values() for c in b.calls if c.method in ("chat", "chat_stream")]
    assert sent[0]["messages"][0] == {"role": "system", "content": "Be brief."}


def test_responses_mid_stream_failure_raises_in_the_sdk(client, backends):
    for b in backends.values():
        b.fail_with(UpstreamError("node died"), after_chunks=2)
    stream = client.responses.create(model="fake-model", input="Say hello.", stream=True)
    got = []
    with pytest.raises(openai.APIError, match="mid-stream"):
        got.extend(stream)
    assert [e.type for e in got].count("response.output_text.delta") == 2


@pytest.mark.parametrize(
    ("tools", "param"),
    [([{"type": "web_search"}], "tools[0].type"), ([{"type": "function"}], "tools[0].name"), ({"a": 1}, "tools")],
)
def test_responses_with_unservable_tools_are_a_400_naming_the_field(client, backends, tools, param):
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="fake-model", input="hi", tools=tools)
    assert bad.value.body["param"] == param
    assert not [c for b in backends.values() for c in b.calls if c.method.startswith("chat")]
