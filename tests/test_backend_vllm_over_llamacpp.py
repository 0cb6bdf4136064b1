"""The vLLM backend's OpenAI-compatible paths pass the conformance suite against a real OpenAI-style server.

vLLM itself runs only in the slow tier (``nox -s tests_vllm``). Here the same suite runs in the
default tier against the session's real llama.cpp server, which speaks the same OpenAI HTTP API:
chat, streaming, usage, cancellation (proven with llama.cpp's own token counter) and a dead
server are exercised for real. Load reads ``vllm:*`` metrics llama.cpp does not have, so it only
checks shapes here; the vLLM-specific parts have respx tests and the slow live tests.
"""

from __future__ import annotations

import anyio
import httpx
import pytest

from tooti.backends.prometheus import parse_samples
from tooti.backends.protocol import BackendSettings
from tooti.testing.conformance import BackendConformance
from tooti_backend_vllm.backend import VllmBackend
from tooti_backend_vllm.config import VllmConfig

pytestmark = pytest.mark.live


class TestVllmBackendOverOpenAIServer(BackendConformance):
    @pytest.fixture
    async def backend(self, llama_server):
        self.llama_url = llama_server.base_url
        backend = VllmBackend.from_config(BackendSettings(base_url=llama_server.base_url), VllmConfig())
        await backend.start()
        yield backend
        await backend.aclose()

    async def tokens_generated(self, backend) -> int:
        async with httpx.AsyncClient(base_url=self.llama_url) as client:
            while True:
                samples = parse_samples((await client.get("/metrics")).text)
                if samples["llamacpp:requests_processing"] == 0:
                    return int(samples["llamacpp:tokens_predicted_total"])
                await anyio.sleep(0.05)
