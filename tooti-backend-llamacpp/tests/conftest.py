"""Fixtures of the llama.cpp plugin's own tests (``llama_server`` comes from its pytest11 plugin)."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
