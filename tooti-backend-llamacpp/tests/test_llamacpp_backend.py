"""Unit tests of the llama.cpp backend over a mocked HTTP server (respx): dialect, errors, streams."""

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
from tooti_backend_llamacpp.backend import LlamaCppBackend
from tooti_backend_llamacpp.config import LlamaCppConfig

pytestmark = pytest.mark.anyio

BASE = "http://llama.test:8080"
CHUNK = {"object": "chat.completion.chunk", "id": "c", "model": "m"}


def sse(*events: object) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def chunk(content: str | None = None, finish: str | None = None, **extra: object) -> dict:
    delta = {} if content is None else {"content": content}
    return {**CHUNK, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


class Pieces(httpx.AsyncByteStream):
    """A body delivered in given pieces, optionally failing afterwards like a dropped connection."""

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
    b = LlamaCppBackend.from_config(BackendSettings(base_url=BASE, request_timeout_sec=5), LlamaCppConfig())
    yield b
    await b.aclose()


async def collect(backend, body=None):
    return [c async for c in backend.chat_stream(body or {"messages": []})]


async def test_chat_passes_every_field_through_and_is_assembled_from_a_stream(backend, mock) -> None:
    sse = (
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]}\n\n'
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",'
        b'"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}],"timings":{"predicted_n":2}}\n\n'
        b'data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],'
        b'"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
        b"data: [DONE]\n\n"
    )
    route = mock.post("/v1/chat/completions").respond(content=sse, headers={"content-type": "text/event-stream"})
    body = {"model": "m", "messages": [], "top_k": 5, "x_custom": {"a": 1}, "stream_options": {"include_usage": False}}
    reply = await backend.chat(body)
    sent = json.loads(route.calls.last.request.content)
    assert sent == {
        "cache_prompt": True,  # the server reuses the prefix it holds (conversation affinity sends it here)
        "model": "m",
        "messages": [],
        "top_k": 5,
        "x_custom": {"a": 1},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    assert "stream" not in body  # the caller's dict is untouched
    assert reply["object"] == "chat.completion"
    assert reply["choices"] == [
        {"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}
    ]
    assert reply["usage"]["total_tokens"] == 5
    assert reply["timings"] == {"predicted_n": 2}
    assert reply["id"] == "c1"


async def test_stream_asks_for_usage_and_yields_chunks_split_anywhere(backend, mock) -> None:
    raw = sse(chunk("Hel"), chunk("lo", "stop"), {**CHUNK, "choices": [], "usage": {"completion_tokens": 2}}, "[DONE]")
    pieces = [raw[i : i + 7] for i in range(0, len(raw), 7)]  # cut through lines and JSON
    route = mock.post("/v1/chat/completions").respond(stream=Pieces(pieces))
    chunks = await collect(backend, {"messages": [], "seed": 3})
    assert [c["choices"][0]["delta"].get("content") for c in chunks[:2]] == ["Hel", "lo"]
    assert chunks[-1]["usage"] == {"completion_tokens": 2}
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    assert sent["seed"] == 3


async def test_cache_prompt_is_asked_for_unless_the_client_says_otherwise(backend, mock) -> None:
    route = mock.post("/v1/chat/completions").respond(content=sse(chunk("a", "stop"), "[DONE]"))
    await collect(backend)
    assert json.loads(route.calls.last.request.content)["cache_prompt"] is True
    await collect(backend, {"messages": [], "cache_prompt": False})
    assert json.loads(route.calls.last.request.content)["cache_prompt"] is False
    route = mock.post("/v1/completions").respond(
        content=sse({**CHUNK, "choices": [{"index": 0, "text": "a"}]}, "[DONE]")
    )
    [c async for c in backend.completion_stream({"prompt": "p"})]
    assert json.loads(route.calls.last.request.content)["cache_prompt"] is True


async def test_client_stream_options_win(backend, mock) -> None:
    route = mock.post("/v1/chat/completions").respond(content=sse(chunk("a", "stop"), "[DONE]"))
    await collect(backend, {"messages": [], "stream_options": {"include_usage": False}})
    assert json.loads(route.calls.last.request.content)["stream_options"] == {"include_usage": False}


async def test_sse_comments_crlf_and_multiline_data(backend, mock) -> None:
    event = json.dumps(chunk("x", "stop"))
    raw = f": ping\r\ndata: {event[:10]}\r\ndata: {event[10:]}\r\n\r\ndata: [DONE]".encode()  # no final blank line
    mock.post("/v1/chat/completions").respond(content=raw)
    chunks = await collect(backend)
    assert len(chunks) == 1


async def test_stream_without_done_is_malformed(backend, mock) -> None:
    mock.post("/v1/chat/completions").respond(content=sse(chunk("a"), chunk("b")))
    with pytest.raises(MalformedResponse, match=r"\[DONE\]"):
        await collect(backend)


async def test_stream_cut_mid_body_is_malformed(backend, mock) -> None:
    stream = Pieces([sse(chunk("a"))], httpx.RemoteProtocolError("peer closed connection"))
    mock.post("/v1/chat/completions").respond(stream=stream)
    stream = backend.chat_stream({"messages": []})
    assert (await anext(stream))["choices"]
    with pytest.raises(MalformedResponse, match="cut"):
        await anext(stream)


async def test_closing_the_stream_closes_the_upstream_response(backend, mock) -> None:
    body = Pieces([sse(chunk(str(i))) for i in range(50)])
    mock.post("/v1/chat/completions").respond(stream=body)
    stream = backend.chat_stream({"messages": []})
    await anext(stream)
    assert not body.closed
    await stream.aclose()
    assert body.closed


async def test_stream_idle_timeout(backend, mock) -> None:
    mock.post("/v1/chat/completions").respond(stream=Pieces([sse(chunk("a"))], httpx.ReadTimeout("idle")))
    with pytest.raises(BackendTimeout):
        await collect(backend)


@pytest.mark.parametrize("bad", ["{not json", "[1, 2]", json.dumps({"object": "x"})])
async def test_malformed_stream_events(backend, mock, bad) -> None:
    mock.post("/v1/chat/completions").respond(content=sse(bad, "[DONE]"))
    with pytest.raises(MalformedResponse):
        await collect(backend)


async def test_error_event_inside_a_stream(backend, mock) -> None:
    error = {"error": {"code": 400, "message": "exceeds the context", "type": "exceed_context_size_error"}}
    mock.post("/v1/chat/completions").respond(content=sse(chunk("a"), error))
    with pytest.raises(BackendBadRequest, match="exceeds the context"):
        await collect(backend)


async def test_overlong_stream_line_is_refused(backend, mock, monkeypatch) -> None:
    monkeypatch.setattr("tooti.backends.openai_compat.LineSplitter", _small_splitter)
    mock.post("/v1/chat/completions").respond(stream=Pieces([b"data: " + b"x" * 100]))
    with pytest.raises(MalformedResponse, match="exceeds"):
        await collect(backend)


def _small_splitter():
    from tooti.backends.streaming import LineSplitter

    return LineSplitter(64)


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (400, {"error": {"code": 400, "message": "bad", "type": "invalid_request_error"}}, BackendBadRequest),
        (404, {"error": {"message": "model `x` not found", "param": "model"}}, ModelNotFound),
        (404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}}, BackendBadRequest),
        (408, {"error": "slow"}, BackendTimeout),
        (429, {"error": {"message": "slow down"}}, BackendOverloaded),
        (500, {"error": {"message": "boom"}}, UpstreamError),
        (501, {"error": {"code": 501, "message": "no embeddings", "type": "not_supported_error"}}, BackendBadRequest),
        (503, {"error": {"message": "Loading model"}}, UpstreamError),
        (503, {"error": {"message": "server busy, queue full"}}, BackendOverloaded),
        (504, "gateway timeout", BackendTimeout),
    ],
)
async def test_status_codes_map_to_error_classes(backend, mock, status, payload, error) -> None:
    kwargs = {"json": payload} if isinstance(payload, dict) else {"text": payload}
    mock.post("/v1/chat/completions").respond(status, **kwargs)
    mock.post("/v1/completions").respond(status, **kwargs)
    with pytest.raises(error) as info:
        await backend.chat({"messages": []})
    assert info.value.status_code == status
    with pytest.raises(error):
        await collect(backend)
    with pytest.raises(error):
        await backend.completion({"prompt": "x"})


async def test_connection_refused_and_connect_timeout(backend, mock) -> None:
    mock.post("/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(BackendUnavailable):
        await backend.chat({"messages": []})
    mock.post("/v1/chat/completions").mock(side_effect=httpx.ConnectTimeout("slow"))
    with pytest.raises(BackendTimeout):
        await backend.chat({"messages": []})
    mock.get("/health").mock(side_effect=httpx.ConnectError("refused"))
    health = await backend.health()
    assert not health.ok
    assert "unreachable" in health.detail


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"object": "chat.completion"}', b'{"choices": {}}', b""])
async def test_malformed_non_stream_answers(backend, mock, body) -> None:
    mock.post("/v1/chat/completions").respond(200, content=body)
    with pytest.raises(MalformedResponse):
        await backend.chat({"messages": []})


async def test_oversized_body_is_refused(backend, mock) -> None:
    backend.http.max_body_bytes = 100
    mock.post("/v1/embeddings").respond(200, json={"data": [], "pad": "x" * 200})
    with pytest.raises(MalformedResponse, match="exceeds"):
        await backend.embeddings({"input": "x"})


async def test_models_with_aliases_and_context(backend, mock) -> None:
    mock.get("/v1/models").respond(
        json={
            "object": "list",
            "data": [
                {"id": "smol", "aliases": ["smol", "small"], "owned_by": "llamacpp", "meta": {"n_ctx": 1024}},
                {"id": 3},
            ],
        }
    )
    [model] = await backend.list_models()
    assert model.id == "smol"
    assert model.aliases == ("small",)
    assert model.context_length == 1024


async def test_models_context_falls_back_to_props(backend, mock) -> None:
    mock.get("/v1/models").respond(json={"data": [{"id": "m"}]})
    mock.get("/props").respond(json={"default_generation_settings": {"n_ctx": 512}, "total_slots": 4})
    [model] = await backend.list_models()
    assert model.context_length == 512


async def test_models_without_data_is_malformed(backend, mock) -> None:
    mock.get("/v1/models").respond(json={"models": []})
    with pytest.raises(MalformedResponse):
        await backend.list_models()


METRICS = """# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 2
# TYPE llamacpp:requests_deferred gauge
llamacpp:requests_deferred 3
"""


async def test_load_from_metrics_and_props(backend, mock) -> None:
    props = mock.get("/props").respond(json={"total_slots": 2})
    mock.get("/metrics").respond(text=METRICS)
    load = await backend.load()
    assert (load.in_flight, load.queued, load.capacity) == (2, 3, 2)
    await backend.load()
    assert props.call_count == 1  # slots are cached


async def test_load_falls_back_to_slots_when_metrics_are_off(backend, mock) -> None:
    mock.get("/props").respond(404, json={"error": {"code": 404, "message": "File Not Found"}})
    mock.get("/metrics").respond(501, json={"error": {"code": 501, "message": "metrics not supported"}})
    mock.get("/slots").respond(json=[{"id": 0, "is_processing": True}, {"id": 1, "is_processing": False}])
    load = await backend.load()
    assert (load.in_flight, load.queued, load.capacity) == (1, 0, 2)


async def test_load_with_no_routes_is_unknown_not_an_error(backend, mock) -> None:
    for path in ("/props", "/metrics", "/slots"):
        mock.get(path).respond(404, text="not found")
    load = await backend.load()
    assert (load.in_flight, load.capacity) == (0, None)


async def test_malformed_metrics(backend, mock) -> None:
    mock.get("/props").respond(json={"total_slots": 2})
    mock.get("/metrics").respond(text="llamacpp:requests_processing two words here\n")
    with pytest.raises(MalformedResponse):
        await backend.load()


async def test_api_key_is_sent(mock) -> None:
    settings = BackendSettings(base_url=BASE, api_key="sekrit")
    b = LlamaCppBackend.from_config(settings, LlamaCppConfig())
    route = mock.get("/health").respond(json={"status": "ok"})
    assert (await b.health()).ok
    assert route.calls.last.request.headers["authorization"] == "Bearer sekrit"
    await b.aclose()


async def test_default_url_and_config_type_check() -> None:
    b = LlamaCppBackend.from_config(BackendSettings(base_url=""), LlamaCppConfig())
    assert b.http.base_url == "http://127.0.0.1:8080"
    await b.aclose()
    with pytest.raises(TypeError):
        LlamaCppBackend.from_config(BackendSettings(base_url=""), BackendSettings(base_url=""))
