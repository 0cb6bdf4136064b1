"""The Ollama test shim answers in shapes the official ``ollama`` client parses (validating the shim)."""

from __future__ import annotations

import anyio
import httpx
import ollama
import pytest

pytestmark = [pytest.mark.live, pytest.mark.anyio]


@pytest.fixture
async def client(ollama_shim):
    c = ollama.AsyncClient(host=ollama_shim.base_url)
    yield c
    await c._client.aclose()


async def test_list_ps_show(client) -> None:
    with anyio.fail_after(30):
        listed = await client.list()
        running = await client.ps()
        shown = await client.show("smollm2")
    assert [m.model for m in listed.models] == ["smollm2:latest"]
    assert len(listed.models[0].digest) == 64
    assert listed.models[0].details.quantization_level == "Q4_1"
    assert running.models[0].context_length == 1024
    assert running.models[0].expires_at is not None
    assert shown.modelinfo["llama.context_length"] == 8192
    assert "completion" in shown.capabilities


async def test_chat_non_stream_and_stream(client) -> None:
    messages = [{"role": "user", "content": "Say hi."}]
    with anyio.fail_after(60):
        reply = await client.chat("smollm2", messages=messages, options={"num_predict": 5, "temperature": 0})
        parts = [
            p async for p in await client.chat("smollm2", messages=messages, stream=True, options={"num_predict": 5})
        ]
    assert reply.done
    assert reply.message.role == "assistant"
    assert isinstance(reply.message.content, str)
    assert 0 < reply.eval_count <= 5
    assert reply.prompt_eval_count > 0
    assert reply.total_duration > 1000  # nanoseconds
    assert [p.done for p in parts] == [False] * (len(parts) - 1) + [True]
    assert parts[-1].done_reason in {"stop", "length"}
    assert 0 < parts[-1].eval_count <= 5


async def test_generate_and_embed(client) -> None:
    with anyio.fail_after(60):
        generated = await client.generate("smollm2", "Once upon a time", options={"num_predict": 3})
        embedded = await client.embed("smollm2", ["hello", "world"])
    assert generated.done
    assert isinstance(generated.response, str)
    assert generated.eval_count <= 3
    assert len(embedded.embeddings) == 2
    assert abs(sum(x * x for x in embedded.embeddings[0]) - 1.0) < 1e-3  # Ollama normalizes


async def test_errors_use_ollamas_shape(client, ollama_shim) -> None:
    with anyio.fail_after(30):
        with pytest.raises(ollama.ResponseError) as info:
            await client.chat("nope", messages=[{"role": "user", "content": "x"}])
        assert info.value.status_code == 404
        assert info.value.error == "model 'nope' not found"
        async with httpx.AsyncClient(base_url=ollama_shim.base_url) as raw:
            assert (await raw.get("/")).text == "Ollama is running"
            assert (await raw.get("/api/version")).json()["version"]
            bad = await raw.post("/api/chat", content=b"{nope")
            assert bad.status_code == 400
            assert "error" in bad.json()
            assert (await raw.get("/api/nothing")).status_code == 404
