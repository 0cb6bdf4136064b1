"""The shared llama.cpp fixture and the fake backend behave as documented."""

from __future__ import annotations

import os

import httpx
import pytest

from tooti.errors import BackendUnavailable, ModelNotFound
from tooti.testing import FakeBackend, make_plugin_host
from tooti.testing.conformance import BackendConformance


class TestFakeBackendConformance(BackendConformance):
    """The fake other tests rely on behaves like a real backend (and the suite runs without a server)."""

    test_dead_server_is_unavailable = None  # no server to be dead
    test_aclose_is_idempotent = None  # needs dead_backend, which needs a base_url

    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request):
        return request.param

    @pytest.fixture
    async def backend(self):
        backend = FakeBackend(chunks=40, chunk_delay_sec=0.001)
        await backend.start()
        yield backend
        await backend.aclose()

    async def tokens_generated(self, backend) -> int:
        return backend.tokens_generated


@pytest.mark.live
def test_llama_server_fixture_is_a_real_server(llama_server) -> None:
    assert llama_server.model_path.is_file()
    assert llama_server.base_url.startswith("http://127.0.0.1:")
    os.kill(llama_server.pid, 0)  # alive, or this raises
    with httpx.Client(base_url=llama_server.base_url, timeout=10) as client:
        assert client.get("/health").json() == {"status": "ok"}
        props = client.get("/props").json()
        assert props["total_slots"] == 2
        assert "llamacpp:requests_processing" in client.get("/metrics").text


def test_make_plugin_host_sees_only_given_backends() -> None:
    host = make_plugin_host()
    assert host.backend_class("fake") is FakeBackend
    assert host.available("backend") == ["fake"]


@pytest.mark.anyio
async def test_fake_backend_chat_and_stream() -> None:
    backend = FakeBackend(chunks=3)
    await backend.start()
    reply = await backend.chat({"model": "fake-model", "messages": [{"role": "user", "content": "hi there"}]})
    assert reply["choices"][0]["message"]["content"] == backend.reply
    assert reply["usage"]["prompt_tokens"] == 2
    chunks = [c async for c in backend.chat_stream({"model": "fake-model", "messages": []})]
    assert len(chunks) == 4
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert "usage" in chunks[-1]
    short = await backend.chat({"model": "fake-model", "messages": [], "max_tokens": 2})
    assert short["usage"]["completion_tokens"] == 2
    assert short["choices"][0]["finish_reason"] == "length"
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == backend.reply
    assert backend.streams[0].state == "finished"
    await backend.aclose()
    assert backend.methods() == ["start", "chat", "chat_stream", "chat", "aclose"]


@pytest.mark.anyio
async def test_fake_backend_records_early_close() -> None:
    backend = FakeBackend(chunks=5)
    stream = backend.chat_stream({"model": "fake-model"})
    await anext(stream)
    assert backend.in_flight == 1
    await stream.aclose()  # type: ignore[attr-defined]
    assert backend.closed_early == 1
    assert backend.in_flight == 0


@pytest.mark.anyio
async def test_fake_backend_failures() -> None:
    backend = FakeBackend(chunks=4)
    backend.fail_with(BackendUnavailable("down"))
    with pytest.raises(BackendUnavailable):
        await backend.chat({"model": "fake-model"})
    backend.fail_with(BackendUnavailable("mid-stream"), after_chunks=2)
    seen: list[dict] = []

    async def consume() -> None:
        async for chunk in backend.chat_stream({"model": "fake-model"}):
            seen.append(chunk)

    with pytest.raises(BackendUnavailable):
        await consume()
    assert len(seen) == 2
    assert backend.streams[-1].state == "failed"
    backend.fail_with(None)
    with pytest.raises(ModelNotFound):
        await backend.chat({"model": "other"})
    assert (await backend.health()).ok
