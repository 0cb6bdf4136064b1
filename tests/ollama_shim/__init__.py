"""A test server that speaks Ollama's native API faithfully, answering with a real llama.cpp server.

No Ollama binary can be installed here, so the Ollama backend is tested through this shim: a raw
ASGI app on uvicorn (loopback, own thread) whose routes, field names, NDJSON streaming,
nanosecond durations and ``{"error": "..."}`` bodies follow Ollama's API, and whose tokens come
from the real llama.cpp server behind it. ``tests/test_backend_ollama_shim.py`` checks its answers
with the official ``ollama`` client's own parsing before the backend's tests rely on it.

When the client disconnects mid-stream the shim closes its request to llama.cpp, as Ollama
stops generating, so cancellation is observable end to end.
"""

from __future__ import annotations

from .app import MODEL, OllamaShim
from .server import ShimServer

__all__ = ["MODEL", "OllamaShim", "ShimServer"]
