"""The Ollama backend against the Ollama test shim over real llama.cpp: conformance and dialect details."""

from __future__ import annotations

import anyio
import httpx
import pytest

from tooti.backends.prometheus import parse_samples
from tooti.backends.protocol import BackendSettings
from tooti.errors import BackendBadRequest, ModelNotFound
from tooti.testing.conformance import BackendConformance
from tooti_backend_ollama.backend import OllamaBackend
from tooti_backend_ollama.config import OllamaConfig

pytestmark = pytest.mark.live


async def llama_tokens_when_idle(base_url: str) -> int:
    """llama.cpp's generated-token total once it has no request in flight (the shim's upstream)."""
    async with httpx.AsyncClient(base_url=base_url) as client:
        while True:
            samples = parse_samples((await client.get("/metrics")).text)
            if samples["llamacpp:requests_processing"] == 0:
                return int(samples["llamacpp:tokens_predicted_total"])
            await anyio.sleep(0.05)


class TestOllamaConformance(BackendConformance):
    @pytest.fixture
    async def backend(self, ollama_shim, llama_server):
        self.llama_url = llama_server.base_url
        backend = OllamaBackend.from_config(BackendSettings(base_url=ollama_shim.base_url), OllamaConfig())
        await backend.start()
        yield backend
        await backend.aclose()

    async def tokens_generated(self, backend) -> int:
        return await llama_tokens_when_idle(self.llama_url)


@pytest.fixture
async def backend(ollama_shim):
    b = OllamaBackend.from_config(BackendSettings(base_url=ollama_shim.base_url), OllamaConfig(num_parallel=2))
    yield b
    await b.aclose()


@pytest.mark.anyio
async def test_models_have_alias_digest_and_context(backend) -> None:
    with anyio.fail_after(30):
        [model] = await backend.list_models()
        assert await backend.version()
        assert await backend.loaded_models() == ["smollm2:latest"]
    assert model.id == "smollm2:latest"
    assert model.aliases == ("smollm2",)
    assert model.digest is not None
    assert model.digest.startswith("sha256:")
    assert model.context_length == 1024  # the running context from /api/ps


@pytest.mark.anyio
async def test_openai_parameters_reach_the_server(backend, ollama_shim) -> None:
    body = {
        "model": "smollm2",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 3,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 1,
        "stop": "\n\n",
        "presence_penalty": 0.1,
        "frequency_penalty": 0.1,
        "top_k": 20,
    }
    with anyio.fail_after(60):
        reply = await backend.chat(body)
    assert reply["usage"]["completion_tokens"] <= 3
    assert reply["model"] == "smollm2"


@pytest.mark.anyio
async def test_completion_and_embeddings(backend) -> None:
    with anyio.fail_after(60):
        completion = await backend.completion({"model": "smollm2", "prompt": "Once upon", "max_tokens": 3})
        embedded = await backend.embeddings({"model": "smollm2", "input": ["a", "b"]})
        b64 = await backend.embeddings({"model": "smollm2", "input": "a", "encoding_format": "base64"})
    assert completion["object"] == "text_completion"
    assert completion["usage"]["completion_tokens"] <= 3
    assert [len(d["embedding"]) for d in embedded["data"]] == [576, 576]
    assert isinstance(b64["data"][0]["embedding"], str)


@pytest.mark.anyio
async def test_unknown_model_and_bad_requests(backend) -> None:
    with anyio.fail_after(30):
        with pytest.raises(ModelNotFound, match="not found"):
            await backend.chat({"model": "llama9", "messages": [{"role": "user", "content": "x"}]})
        with pytest.raises(BackendBadRequest, match="'n'"):
            await backend.chat({"model": "smollm2", "messages": [], "n": 2})
        too_long = {"model": "smollm2", "messages": [{"role": "user", "content": "word " * 3000}]}
        with pytest.raises(BackendBadRequest, match="context"):
            await backend.chat(too_long)


@pytest.mark.anyio
async def test_cancelled_stream_reaches_the_shim(backend, ollama_shim) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Tell a long story."}], "max_tokens": 400}
    before = ollama_shim.app.disconnects
    with anyio.fail_after(60):
        stream = backend.chat_stream(body)
        await anext(stream)
        await stream.aclose()
        while ollama_shim.app.disconnects == before:
            await anyio.sleep(0.05)
    assert (await backend.load()).in_flight == 0
