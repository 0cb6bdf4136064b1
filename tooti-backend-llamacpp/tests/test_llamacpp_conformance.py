"""The llama.cpp backend passes tooti's backend conformance suite against a real llama.cpp server."""

from __future__ import annotations

import pytest

from tooti.backends.prometheus import parse_samples
from tooti.backends.protocol import BackendSettings
from tooti.testing.conformance import BackendConformance
from tooti_backend_llamacpp.backend import LlamaCppBackend
from tooti_backend_llamacpp.config import LlamaCppConfig

pytestmark = pytest.mark.live


class TestLlamaCppConformance(BackendConformance):
    @pytest.fixture(params=["asyncio", "trio"])
    def anyio_backend(self, request):
        return request.param  # the node's p2p side runs on trio, the gateway on asyncio

    @pytest.fixture
    async def backend(self, llama_server):
        backend = LlamaCppBackend.from_config(BackendSettings(base_url=llama_server.base_url), LlamaCppConfig())
        await backend.start()
        yield backend
        await backend.aclose()

    async def tokens_generated(self, backend) -> int:
        samples = parse_samples(await backend.http.request_text("GET", "/metrics"))
        return int(samples["llamacpp:tokens_predicted_total"])
