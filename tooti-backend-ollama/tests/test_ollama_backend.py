"""Unit tests of the Ollama backend over a mocked Ollama server (respx): routes, NDJSON, errors."""

from __future__ import annotations

import json

import httpx
import pytest
import respx

from tooti.backends.protocol import BackendSettings
from tooti.errors import (
    BackendBadRequest,
    BackendOverloaded,
    BackendTimeout,
    BackendUnavailable,
    MalformedResponse,
    ModelNotFound,
    UpstreamError,
)
from tooti_backend_ollama.backend import OllamaBackend
from tooti_backend_ollama.config import OllamaConfig

pytestmark = pytest.mark.anyio

BASE = "http://ollama.test:11434"
LINE = {"model": "llama3.2", "created_at": "2026-11-24T20:00:00.1Z", "done": False}
DONE = {**LINE, "done": True, "done_reason": "stop", "prompt_eval_count": 7, "eval_count": 2, "eval_duration": 10}
TAG = {
    "name": "llama3.2:latest",
    "model": "llama3.2:latest",
    "modified_at": "2026-11-01T00:00:00Z",
    "size": 2019393189,
    "digest": "a80c4f17acd55265feec403c7aef86be0c25983ab279d83f3bcd3abbcb5b8b72",
    "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
}


def ndjson(*objects: object) -> bytes:
    return b"".join((o if isinstance(o, str) else json.dumps(o)).encode() + b"\n" for o in objects)


def msg(content: str) -> dict:
    return {**LINE, "message": {"role": "assistant", "content": content}}


class Pieces(httpx.AsyncByteStream):
    def __init__(self, pieces: list[bytes], error: Exception | None = None) -> None:
        self.pieces, self.error, self.closed = pieces, error, False

    async def __aiter__(self):
        for piece in self.pieces:
            yield piece
        if self.error is not None:
            raise self.error

    async def aclose(self) -> None:
        self.closed = True


@pytest.fixture
def mock():
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def backend(mock):
    b = OllamaBackend.from_config(BackendSettings(base_url=BASE, request_timeout_sec=5), OllamaConfig())
    yield b
    await b.aclose()


async def collect(backend, body=None):
    return [c async for c in backend.chat_stream(body or {"model": "llama3.2", "messages": []})]


async def test_models_alias_digest_and_context_from_show(backend, mock) -> None:
    mock.get("/api/tags").respond(json={"models": [TAG, {"name": "qwen3:8b", "digest": "sha256:abc"}]})
    mock.get("/api/ps").respond(json={"models": [{"name": "qwen3:8b", "context_length": 4096}]})
    show = mock.post("/api/show").respond(json={"model_info": {"llama.context_length": 131072}, "details": {}})
    models = await backend.list_models()
    assert [(m.id, m.aliases, m.context_length) for m in models] == [
        ("llama3.2:latest", ("llama3.2",), 131072),
        ("qwen3:8b", (), 4096),
    ]
    assert models[0].digest == f"sha256:{TAG['digest']}"
    assert models[1].digest == "sha256:abc"
    assert json.loads(show.calls.last.request.content) == {"model": "llama3.2:latest"}
    await backend.list_models()
    assert show.call_count == 1  # cached by digest


async def test_configured_num_ctx_wins(mock) -> None:
    b = OllamaBackend.from_config(BackendSettings(base_url=BASE), OllamaConfig(num_ctx=8192))
    mock.get("/api/tags").respond(json={"models": [TAG]})
    mock.get("/api/ps").respond(500, json={"error": "boom"})  # ps failing does not break the listing
    [model] = await b.list_models()
    assert model.context_length == 8192
    await b.aclose()


async def test_health_version_load(backend, mock) -> None:
    mock.get("/api/tags").respond(json={"models": []})
    mock.get("/api/version").respond(json={"version": "0.12.6"})
    mock.get("/api/ps").respond(json={"models": [TAG]})
    assert (await backend.health()).ok
    assert await backend.version() == "0.12.6"
    assert await backend.loaded_models() == ["llama3.2:latest"]
    load = await backend.load()
    assert (load.in_flight, load.queued) == (0, 0)
    mock.get("/api/ps").respond(json={"nothing": []})
    with pytest.raises(MalformedResponse):
        await backend.load()


async def test_chat_request_and_answer(backend, mock) -> None:
    route = mock.post("/api/chat").respond(json={**DONE, "message": {"role": "assistant", "content": "Hi!"}})
    out = await backend.chat({"model": "llama3.2", "messages": [{"role": "user", "content": "x"}], "max_tokens": 5})
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is False
    assert sent["options"] == {"num_predict": 5}
    assert out["choices"][0]["message"]["content"] == "Hi!"
    assert out["usage"]["total_tokens"] == 9


async def test_stream_translates_ndjson_split_anywhere(backend, mock) -> None:
    raw = ndjson(msg("He"), msg("llo"), {**DONE, "message": {"role": "assistant", "content": ""}})
    route = mock.post("/api/chat").respond(stream=Pieces([raw[i : i + 5] for i in range(0, len(raw), 5)]))
    chunks = await collect(backend)
    assert json.loads(route.calls.last.request.content)["stream"] is True
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:2]] == ["He", "llo"]
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[3]["usage"] == {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}


async def test_stream_honours_include_usage_false(backend, mock) -> None:
    mock.post("/api/chat").respond(content=ndjson(msg("a"), DONE))
    body = {"model": "m", "messages": [], "stream_options": {"include_usage": False}}
    chunks = await collect(backend, body)
    assert not any("usage" in c for c in chunks)


async def test_stream_without_done_is_malformed(backend, mock) -> None:
    mock.post("/api/chat").respond(content=ndjson(msg("a"), msg("b")))
    with pytest.raises(MalformedResponse, match="done"):
        await collect(backend)


@pytest.mark.parametrize("bad", ["{nope", "[1]", json.dumps({**LINE, "message": {"content": 5}})])
async def test_malformed_ndjson_lines(backend, mock, bad) -> None:
    mock.post("/api/chat").respond(content=ndjson(msg("a"), bad, DONE))
    with pytest.raises(MalformedResponse):
        await collect(backend)


async def test_error_line_mid_stream(backend, mock) -> None:
    mock.post("/api/chat").respond(content=ndjson(msg("a"), {"error": "llama runner process has terminated"}))
    with pytest.raises(UpstreamError, match="terminated"):
        await collect(backend)


async def test_truncated_stream_and_idle_timeout(backend, mock) -> None:
    mock.post("/api/chat").respond(stream=Pieces([ndjson(msg("a"))], httpx.ReadError("reset")))
    with pytest.raises(MalformedResponse):
        await collect(backend)
    mock.post("/api/chat").respond(stream=Pieces([ndjson(msg("a"))], httpx.ReadTimeout("idle")))
    with pytest.raises(BackendTimeout):
        await collect(backend)


async def test_closing_the_stream_closes_the_response_and_in_flight(backend, mock) -> None:
    body = Pieces([ndjson(msg(str(i))) for i in range(30)])
    mock.post("/api/chat").respond(stream=body)
    stream = backend.chat_stream({"model": "m", "messages": []})
    await anext(stream)
    assert backend.in_flight == 1
    await stream.aclose()
    assert body.closed
    assert backend.in_flight == 0


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (404, {"error": "model 'llama9' not found, try pulling it first"}, ModelNotFound),
        (400, {"error": "invalid options"}, BackendBadRequest),
        (429, {"error": "server busy, please try again.  maximum pending requests exceeded"}, BackendOverloaded),
        (500, {"error": "llama runner process has terminated: signal: killed"}, UpstreamError),
        (503, {"error": "server busy, please try again"}, BackendOverloaded),
    ],
)
async def test_error_statuses(backend, mock, status, payload, error) -> None:
    mock.post("/api/chat").respond(status, json=payload)
    mock.post("/api/generate").respond(status, json=payload)
    mock.post("/api/embed").respond(status, json=payload)
    with pytest.raises(error, match=payload["error"][:10]):
        await backend.chat({"model": "llama9", "messages": []})
    with pytest.raises(error):
        await collect(backend)
    with pytest.raises(error):
        await backend.completion({"model": "llama9", "prompt": "x"})
    with pytest.raises(error):
        await backend.embeddings({"model": "llama9", "input": "x"})


async def test_error_key_in_a_200_answer(backend, mock) -> None:
    mock.post("/api/chat").respond(json={"error": "something odd"})
    with pytest.raises(UpstreamError):
        await backend.chat({"model": "m", "messages": []})


async def test_connection_refused(backend, mock) -> None:
    mock.get("/api/tags").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(BackendUnavailable):
        await backend.list_models()
    assert not (await backend.health()).ok


async def test_generate_and_embed(backend, mock) -> None:
    gen = mock.post("/api/generate").respond(json={**DONE, "response": "abc"})
    mock.post("/api/embed").respond(json={"model": "m", "embeddings": [[0.1, 0.2]], "prompt_eval_count": 1})
    out = await backend.completion({"model": "m", "prompt": "x", "temperature": 0})
    assert out["choices"][0]["text"] == "abc"
    assert json.loads(gen.calls.last.request.content)["options"] == {"temperature": 0}
    assert (await backend.embeddings({"model": "m", "input": "x"}))["data"][0]["embedding"] == [0.1, 0.2]


async def test_defaults_and_registration() -> None:
    b = OllamaBackend.from_config(BackendSettings(base_url=""), OllamaConfig())
    assert b.http.base_url == "http://127.0.0.1:11434"
    await b.aclose()
    with pytest.raises(TypeError):
        OllamaBackend.from_config(BackendSettings(base_url=""), BackendSettings(base_url=""))
    from tooti.plugins.host import PluginHost

    assert PluginHost(environ={}).backend_class("ollama") is OllamaBackend
