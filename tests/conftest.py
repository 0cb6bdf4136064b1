"""Shared fixtures for the cross-package tests in ``tests/``.

Fixtures available here without import (through ``pytest11`` entry points):

- ``llama_server`` (session): a real llama.cpp server serving SmolLM2-135M on a free loopback port,
  from :mod:`tooti_backend_llamacpp.pytest_plugin`; attributes ``base_url``, ``pid``,
  ``model_path``. Defined once there so ``tests/`` and ``tooti-backend-llamacpp/tests`` share one
  server process per session.
- ``fake_backend``, ``plugin_host``: from :mod:`tooti.testing.pytest_plugin`.

Defined here: ``anyio_backend`` (asyncio by default; a module may override it, e.g. with trio).
"""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
