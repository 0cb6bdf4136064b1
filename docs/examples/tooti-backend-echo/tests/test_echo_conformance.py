"""The conformance suite every tooti backend should pass, run against the echo backend."""

from __future__ import annotations

import pytest

from tooti import BackendSettings
from tooti.testing.conformance import BackendConformance
from tooti_backend_echo.backend import EchoBackend, EchoConfig


class TestEchoConformance(BackendConformance):
    @pytest.fixture
    async def backend(self):
        backend = EchoBackend.from_config(BackendSettings(base_url=""), EchoConfig())
        await backend.start()
        yield backend
        await backend.aclose()

    # The echo backend has no server that could be down; a backend that talks to a server keeps this test.
    test_dead_server_is_unavailable = None
