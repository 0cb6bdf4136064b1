"""Shared fixtures for the cross-package tests in ``tests/``.

Fixtures available here without import (through ``pytest11`` entry points):

- ``llama_server`` (session): a real llama.cpp server serving SmolLM2-135M on a free loopback port,
  from :mod:`tooti_backend_llamacpp.pytest_plugin`; attributes ``base_url``, ``pid``,
  ``model_path``. Defined once there so ``tests/`` and ``tooti-backend-llamacpp/tests`` share one
  server process per session.
- ``fake_backend``, ``plugin_host``: from :mod:`tooti.testing.pytest_plugin`.

Defined here: ``anyio_backend`` (asyncio by default; a module may override it, e.g. with trio) and
``ollama_shim`` (session): an Ollama-API server over ``llama_server``, see ``tests/ollama_shim/``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from types import ModuleType


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _load_ollama_shim() -> ModuleType:
    """Import the ``tests/ollama_shim`` package by path (``--import-mode=importlib`` puts no test dir on sys.path)."""
    name = "tooti_tests_ollama_shim"
    if name in sys.modules:
        return sys.modules[name]
    package = Path(__file__).with_name("ollama_shim")
    spec = importlib.util.spec_from_file_location(
        name, package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def ollama_shim(llama_server):
    """An Ollama-API test server (``tests/ollama_shim/``) in front of the session's llama.cpp server.

    Yields the :class:`ShimServer`; ``.base_url`` is its address, ``.app`` the ASGI app (with the
    requests it saw and the client disconnects it noticed).
    """
    shim = _load_ollama_shim()
    app = shim.OllamaShim(llama_server.base_url, llama_server.model_path, context_length=1024)
    server = shim.ShimServer(app)
    server.start()
    try:
        yield server
    finally:
        server.stop()
