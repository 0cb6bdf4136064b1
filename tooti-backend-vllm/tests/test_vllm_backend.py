"""Unit tests of the vLLM backend over a mocked vLLM server (respx), in vLLM 0.32's dialect."""

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
from tooti_backend_vllm.backend import VllmBackend
from tooti_backend_vllm.config import VllmConfig

pytestmark = pytest.mark.anyio

BASE = "http://vllm.test:8000"
LABELS = '{engine="0",model_name="smollm2-135m"}'


def sse(*events: object) -> bytes:
    return b"".join(f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n".encode() for e in events)


def chunk(delta: dict, finish: str | None = None, **extra: object) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": "smollm2-135m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }


@pytest.fixture
def mock():
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def backend(mock):
    b = VllmBackend.from_config(BackendSettings(base_url=BASE, request_timeout_sec=5), VllmConfig(capacity=4))
    yield b
    await b.aclose()


async def test_health_accepts_an_empty_body(backend, mock) -> None:
    mock.get("/health").respond(200, content=b"")
    assert (await backend.health()).ok
    mock.get("/health").respond(500, content=b"")
    health = await backend.health()
    assert not health.ok
    assert "500" in health.detail


async def test_models_report_max_model_len(backend, mock) -> None:
    mock.get("/v1/models").respond(
        json={
            "object": "list",
            "data": [
                {"id": "smollm2-135m", "object": "model", "owned_by": "vllm", "root": "/m", "max_model_len": 2048},
                {"id": "lora-a", "object": "model", "owned_by": "vllm", "parent": "smollm2-135m"},
            ],
        }
    )
    models = await backend.list_models()
    assert [(m.id, m.context_length) for m in models] == [("smollm2-135m", 2048), ("lora-a", None)]
    assert models[0].owned_by == "vllm"


def metrics(**values: float) -> str:
    lines = []
    for name, value in values.items():
        lines += [f"# TYPE vllm:{name} gauge", f"vllm:{name}{LABELS} {value}"]
    return "\n".join(lines) + "\n"


async def test_load_reads_running_waiting_and_kv_cache(backend, mock) -> None:
    text = metrics(num_requests_running=3, num_requests_waiting=2, kv_cache_usage_perc=0.25)
    text += (
        '# TYPE vllm:num_requests_waiting_by_reason gauge\nvllm:num_requests_waiting_by_reason{reason="capacity"} 2\n'
    )
    mock.get("/metrics").respond(text=text)
    load = await backend.load()
    assert (load.in_flight, load.queued, load.capacity, load.kv_cache_usage) == (3, 2, 4, 0.25)


@pytest.mark.parametrize(
    ("gauges", "expected"),
    [
        ({"gpu_cache_usage_perc": 0.5}, 0.5),
        ({"cpu_cache_usage_perc": 0.75}, 0.75),
        ({"kv_cache_usage_perc": 0.1, "gpu_cache_usage_perc": 0.9}, 0.1),
        ({}, None),
    ],
)
async def test_kv_cache_usage_falls_back_to_older_names(backend, mock, gauges, expected) -> None:
    mock.get("/metrics").respond(text=metrics(num_requests_running=0, **gauges))
    assert (await backend.load()).kv_cache_usage == expected


async def test_metrics_from_two_engines_are_summed(backend, mock) -> None:
    text = "# TYPE vllm:num_requests_running gauge\n"
    text += 'vllm:num_requests_running{engine="0"} 1\nvllm:num_requests_running{engine="1"} 2\n'
    mock.get("/metrics").respond(text=text)
    assert (await backend.load()).in_flight == 3


async def test_malformed_metrics(backend, mock) -> None:
    mock.get("/metrics").respond(text='vllm:num_requests_running{engine="0" 1\n')
    with pytest.raises(MalformedResponse):
        await backend.load()


async def test_stream_in_vllm_dialect(backend, mock) -> None:
    raw = sse(
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hi"}),
        chunk({"content": "!"}, "stop"),
        {"id": "chatcmpl-1", "object": "chat.completion.chunk", "choices": [], "usage": {"completion_tokens": 2}},
        "[DONE]",
    )
    route = mock.post("/v1/chat/completions").respond(content=raw, headers={"content-type": "text/event-stream"})
    chunks = [c async for c in backend.chat_stream({"model": "smollm2-135m", "messages": [], "min_tokens": 1})]
    assert len(chunks) == 4
    assert chunks[-1]["usage"]["completion_tokens"] == 2
    sent = json.loads(route.calls.last.request.content)
    assert sent["min_tokens"] == 1  # vLLM-only sampling parameter passes through


async def test_stream_without_done_is_malformed(backend, mock) -> None:
    mock.post("/v1/chat/completions").respond(content=sse(chunk({"content": "a"})))
    with pytest.raises(MalformedResponse):
        _ = [c async for c in backend.chat_stream({"messages": []})]


async def test_non_stream_drops_stream_options(backend, mock) -> None:
    route = mock.post("/v1/chat/completions").respond(json={"object": "chat.completion", "choices": []})
    await backend.chat({"messages": [], "stream_options": {"include_usage": True}, "stream": True})
    sent = json.loads(route.calls.last.request.content)
    assert sent["stream"] is False
    assert "stream_options" not in sent


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (
            404,
            {"error": {"message": "The model `x` does not exist.", "type": "NotFoundError", "param": "model"}},
            ModelNotFound,
        ),
        (
            400,
            {"error": {"message": "too long", "type": "BadRequestError", "param": "input_tokens"}},
            BackendBadRequest,
        ),
        (422, {"detail": [{"loc": ["body", "messages"], "msg": "Field required"}]}, BackendBadRequest),
        (429, {"error": {"message": "rate limited"}}, BackendOverloaded),
        (500, {"error": {"message": "EngineCore died"}}, UpstreamError),
    ],
)
async def test_errors(backend, mock, status, payload, error) -> None:
    mock.post("/v1/chat/completions").respond(status, json=payload)
    with pytest.raises(error):
        await backend.chat({"model": "x", "messages": []})


async def test_embeddings_and_completions(backend, mock) -> None:
    mock.post("/v1/embeddings").respond(json={"object": "list", "data": [{"embedding": [0.1], "index": 0}]})
    mock.post("/v1/completions").respond(json={"object": "text_completion", "choices": [{"text": "x"}]})
    assert (await backend.embeddings({"input": "a"}))["data"]
    assert (await backend.completion({"prompt": "a"}))["choices"]
    mock.post("/v1/embeddings").respond(json={"object": "list"})
    with pytest.raises(MalformedResponse):
        await backend.embeddings({"input": "a"})


async def test_transport_failures(backend, mock) -> None:
    mock.get("/v1/models").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(BackendUnavailable):
        await backend.list_models()
    mock.get("/metrics").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(BackendTimeout):
        await backend.load()


async def test_defaults_and_registration() -> None:
    b = VllmBackend.from_config(BackendSettings(base_url=""), VllmConfig())
    assert b.http.base_url == "http://127.0.0.1:8000"
    await b.aclose()
    with pytest.raises(TypeError):
        VllmBackend.from_config(BackendSettings(base_url=""), BackendSettings(base_url=""))
    from tooti.plugins.host import PluginHost

    assert PluginHost(environ={}).backend_class("vllm") is VllmBackend
