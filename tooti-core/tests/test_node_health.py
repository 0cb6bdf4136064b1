"""The node's health watch: internal addresses never leave the node; a failed request triggers a probe."""

from __future__ import annotations

import socket

import pytest

from tooti.backends.http import HttpTransport
from tooti.backends.protocol import BackendHealth, BackendSettings
from tooti.config.model import ModelsSection
from tooti.errors import BackendUnavailable
from tooti.node.health import BackendWatch, WatchedBackend, scrub_addresses
from tooti.testing.fake import FakeBackend


@pytest.fixture
def anyio_backend() -> str:
    return "trio"  # the watch lives in the node's trio loop


@pytest.mark.parametrize(
    "text",
    [
        "llama.cpp unreachable: All connection attempts failed (http://127.0.0.1:8081/v1/chat/completions)",
        "[Errno 111] Connect call failed ('127.0.0.1', 8081)",
        "connection to [::1]:8081 refused",
        "server at localhost:8081 is down",
        "10.1.2.3:443 reset the connection",
    ],
)
def test_scrub_removes_every_internal_address(text: str) -> None:
    scrubbed = scrub_addresses(text)
    for leak in ("127.0.0.1", "8081", "::1", "localhost", "10.1.2.3", "http://"):
        assert leak not in scrubbed, scrubbed


class _DeadServerBackend(FakeBackend):
    """A fake whose chat goes through a real HTTP client to a port where nothing listens."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.http = HttpTransport(BackendSettings(base_url=f"http://127.0.0.1:{port}"), server="test server")

    async def chat(self, body):
        return await self.http.request_json("POST", "/v1/chat/completions", json=body)

    async def health(self) -> BackendHealth:
        return BackendHealth(ok=False, detail=f"nothing at http://127.0.0.1:{self.http.base_url.rsplit(':', 1)[1]}")


@pytest.mark.anyio
async def test_a_request_that_finds_the_server_down_is_scrubbed_and_makes_the_watch_probe() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    backend = _DeadServerBackend(port)
    watch = BackendWatch(backend, ModelsSection(), interval=60.0, initial=[])
    watched = WatchedBackend(backend, watch)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await watched.chat({"model": "m", "messages": []})
    finally:
        await backend.http.aclose()
    assert "127.0.0.1" not in caught.value.message
    assert str(port) not in caught.value.message
    assert watch._wake.is_set()  # the next probe runs now, not in 60 s
    assert await watch.check() is True
    assert watch.healthy is False
    assert watch.announced == []
    assert str(port) not in watch.detail
