"""A reusable conformance suite every :class:`~tooti.backends.protocol.InferenceBackend` should pass.

Subclass :class:`BackendConformance` in a test module and override the ``backend`` fixture
(an async generator fixture yielding a started backend, closed afterwards)::

    from tooti.testing.conformance import BackendConformance

    class TestMyBackend(BackendConformance):
        @pytest.fixture
        async def backend(self, my_server):
            b = MyBackend.from_config(BackendSettings(base_url=my_server.url), MyConfig())
            await b.start()
            yield b
            await b.aclose()

The suite also covers what hook API 2 added: ``native_endpoints`` must be consistent with the
methods a backend has, ``/v1/responses`` works through :mod:`tooti.backends.endpoints` (natively or
translated to chat), and ``completion_stream`` (when present) yields tokens one by one.

Knobs (class attributes) tune sizes and limits; :meth:`BackendConformance.tokens_generated` lets a
suite prove that cancelling a stream stopped generation on the server. The ``dead_backend``
fixture points a fresh instance of the same class at a closed loopback port; override it when the
default config cannot be built without arguments.

Tests assert shapes, counts and ordering, never model output.
"""

# ruff: noqa: S101, D102 - a test suite shipped as a library: pytest asserts; test names say it all
from __future__ import annotations

import socket
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import pytest

from tooti.backends.endpoints import create_response, native_endpoints, stream_completion, stream_response
from tooti.backends.protocol import BackendHealth, BackendSettings, InferenceBackend, LoadSnapshot, ModelInfo
from tooti.errors import BackendUnavailable

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tooti.backends.protocol import JSONObject

__all__ = ["BackendConformance", "closed_port"]


def closed_port() -> int:
    """A loopback TCP port with nothing listening (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _collect(stream: AsyncIterator[JSONObject]) -> list[JSONObject]:
    return [chunk async for chunk in stream]


@pytest.mark.anyio
class BackendConformance:
    """The behaviour the node and the gateway rely on, for any backend."""

    chat_max_tokens: ClassVar[int] = 8
    """``max_tokens`` of the chat requests (keep answers short and tests fast)."""
    cancel_max_tokens: ClassVar[int] = 400
    """``max_tokens`` of the stream that the cancellation test closes after its first chunk."""
    timeout_sec: ClassVar[float] = 60.0
    """Upper bound of each test's I/O."""

    # -- fixtures to override ---------------------------------------------------------------

    @pytest.fixture
    def anyio_backend(self) -> str:
        """The event loop the suite runs on (``"trio"`` works too)."""
        return "asyncio"

    @pytest.fixture
    async def backend(self) -> InferenceBackend:
        """A started backend; subclasses must override this fixture."""
        pytest.fail("override the `backend` fixture in your BackendConformance subclass")

    @pytest.fixture
    def dead_config(self, backend: InferenceBackend) -> Any:
        """The plugin config used for ``dead_backend`` (default: the config type's defaults)."""
        return type(backend).config_type()

    @pytest.fixture
    async def dead_backend(self, backend: InferenceBackend, dead_config: Any) -> AsyncIterator[InferenceBackend]:
        """The same backend class pointed at a loopback port where nothing listens."""
        settings = BackendSettings(base_url=f"http://127.0.0.1:{closed_port()}", connect_timeout_sec=2.0)
        dead = type(backend).from_config(settings, dead_config)
        yield dead
        await dead.aclose()

    @pytest.fixture
    async def model(self, backend: InferenceBackend) -> str:
        """The model id the requests use: the first one the backend lists."""
        with anyio.fail_after(self.timeout_sec):
            models = await backend.list_models()
        assert models, "the backend lists no models"
        return models[0].id

    async def tokens_generated(self, backend: InferenceBackend) -> int | None:
        """The server's running total of generated tokens, or ``None`` when it exposes none.

        Override to make the cancellation test prove the server stopped generating.
        """
        del backend
        return None

    def chat_body(self, model: str, *, max_tokens: int | None = None, **extra: Any) -> JSONObject:
        """A small chat request."""
        return {
            "model": model,
            "messages": [{"role": "user", "content": "Name three colours."}],
            "max_tokens": max_tokens or self.chat_max_tokens,
            "temperature": 0,
            **extra,
        }

    # -- the suite --------------------------------------------------------------------------

    async def test_satisfies_protocol(self, backend: InferenceBackend) -> None:
        assert isinstance(backend, InferenceBackend)
        assert isinstance(type(backend).name, str)
        assert type(backend).name
        assert isinstance(type(backend).config_type(), type(backend).config_type)

    async def test_health_ok(self, backend: InferenceBackend) -> None:
        with anyio.fail_after(self.timeout_sec):
            health = await backend.health()
        assert isinstance(health, BackendHealth)
        assert health.ok, health.detail

    async def test_list_models(self, backend: InferenceBackend) -> None:
        with anyio.fail_after(self.timeout_sec):
            models = await backend.list_models()
        assert models
        assert all(isinstance(m, ModelInfo) and m.id for m in models)
        assert len({m.id for m in models}) == len(models)
        assert all(m.context_length is None or m.context_length > 0 for m in models)

    async def test_chat(self, backend: InferenceBackend, model: str) -> None:
        with anyio.fail_after(self.timeout_sec):
            reply = await backend.chat(self.chat_body(model))
        assert reply["object"] == "chat.completion"
        choice = reply["choices"][0]
        assert choice["message"]["role"] == "assistant"
        assert isinstance(choice["message"]["content"], str)
        assert choice["finish_reason"] in {"stop", "length"}
        usage = reply["usage"]
        assert usage["prompt_tokens"] > 0
        assert 0 < usage["completion_tokens"] <= self.chat_max_tokens
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    async def test_chat_stream_order_and_usage(self, backend: InferenceBackend, model: str) -> None:
        with anyio.fail_after(self.timeout_sec):
            chunks = await _collect(backend.chat_stream(self.chat_body(model)))
        assert chunks
        assert all(c["object"] == "chat.completion.chunk" for c in chunks)
        with_choices = [c for c in chunks if c["choices"]]
        assert with_choices[0]["choices"][0]["delta"].get("role") == "assistant"
        finishes = [i for i, c in enumerate(with_choices) if c["choices"][0].get("finish_reason")]
        assert finishes == [len(with_choices) - 1], "exactly one finish_reason, on the last choice chunk"
        assert any(c["choices"][0]["delta"].get("content") for c in with_choices)
        with_usage = [i for i, c in enumerate(chunks) if c.get("usage")]
        assert with_usage == [len(chunks) - 1], "usage comes once, on the last chunk"
        usage = chunks[-1]["usage"]
        assert 0 < usage["completion_tokens"] <= self.chat_max_tokens

    async def test_max_tokens_is_passed_through(self, backend: InferenceBackend, model: str) -> None:
        with anyio.fail_after(self.timeout_sec):
            reply = await backend.chat(self.chat_body(model, max_tokens=2))
        assert reply["usage"]["completion_tokens"] <= 2

    async def test_load(self, backend: InferenceBackend) -> None:
        with anyio.fail_after(self.timeout_sec):
            load = await backend.load()
        assert isinstance(load, LoadSnapshot)
        assert load.in_flight >= 0
        assert load.queued >= 0
        assert load.capacity is None or load.capacity > 0
        assert load.kv_cache_usage is None or 0.0 <= load.kv_cache_usage <= 1.0

    async def test_stream_cancellation_stops_generation(self, backend: InferenceBackend, model: str) -> None:
        body = self.chat_body(model, max_tokens=self.cancel_max_tokens, temperature=1.0, seed=7)
        body["messages"] = [{"role": "user", "content": "Write a very long story about the sea."}]
        with anyio.fail_after(self.timeout_sec):
            before = await self.tokens_generated(backend)
            stream = backend.chat_stream(body)
            async for chunk in stream:
                if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    break
            await stream.aclose()  # type: ignore[attr-defined]
            while (await backend.load()).in_flight > 0:
                await anyio.sleep(0.05)
            after = await self.tokens_generated(backend)
        if before is not None and after is not None:
            assert after - before < self.cancel_max_tokens // 2, "the server kept generating after the close"

    async def test_concurrent_streams(self, backend: InferenceBackend, model: str) -> None:
        results: list[list[JSONObject]] = []

        async def one() -> None:
            results.append(await _collect(backend.chat_stream(self.chat_body(model))))

        with anyio.fail_after(self.timeout_sec):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
        assert len(results) == 2
        assert all(r and r[-1].get("usage") for r in results)

    async def test_native_endpoints_are_declared_consistently(self, backend: InferenceBackend) -> None:
        declared = native_endpoints(backend)
        assert declared <= {"chat", "completion", "embeddings", "responses"}
        assert "chat" in declared, "chat is what every other endpoint falls back to"
        if "responses" in declared:
            assert callable(getattr(backend, "responses", None)), "'responses' is native but responses() is missing"
            assert callable(getattr(backend, "responses_stream", None)), "responses_stream() is missing"

    def responses_body(self, model: str, **extra: Any) -> JSONObject:
        """A small Responses API request."""
        return {
            "model": model,
            "input": [{"role": "user", "content": [{"type": "input_text", "text": "Name three colours."}]}],
            "instructions": "Answer briefly.",
            "max_output_tokens": self.chat_max_tokens,
            "temperature": 0,
            **extra,
        }

    async def test_responses(self, backend: InferenceBackend, model: str) -> None:
        """``/v1/responses``: passed through when native, translated through chat otherwise."""
        with anyio.fail_after(self.timeout_sec):
            reply = await create_response(backend, self.responses_body(model))
        assert reply["object"] == "response"
        assert reply["status"] in {"completed", "incomplete"}
        texts = [
            part["text"]
            for item in reply["output"]
            if item["type"] == "message"
            for part in item["content"]
            if part["type"] == "output_text"
        ]
        assert texts
        assert 0 < reply["usage"]["output_tokens"] <= self.chat_max_tokens

    async def test_responses_stream_events(self, backend: InferenceBackend, model: str) -> None:
        with anyio.fail_after(self.timeout_sec):
            events = await _collect(stream_response(backend, self.responses_body(model)))
        kinds = [e["type"] for e in events]
        assert kinds[0] == "response.created"
        assert kinds[-1] in {"response.completed", "response.incomplete"}
        assert kinds.count(kinds[-1]) == 1
        deltas = [e for e in events if e["type"] == "response.output_text.delta"]
        assert deltas, "no text delta"
        assert kinds.index("response.output_text.delta") < kinds.index("response.output_text.done")
        done = next(e for e in events if e["type"] == "response.output_text.done")
        assert done["text"] == "".join(d["delta"] for d in deltas)

    async def test_completion_stream_chunks(self, backend: InferenceBackend, model: str) -> None:
        body = {"model": model, "prompt": "Once upon a time", "max_tokens": self.chat_max_tokens, "temperature": 0}
        with anyio.fail_after(self.timeout_sec):
            chunks = await _collect(stream_completion(backend, body))
        texts = [c["choices"][0].get("text") for c in chunks if c.get("choices")]
        assert any(texts)
        if callable(getattr(backend, "completion_stream", None)):
            assert sum(1 for t in texts if t) > 1, "completion_stream() must yield tokens as they come"

    async def test_dead_server_is_unavailable(self, dead_backend: InferenceBackend, model: str) -> None:
        with anyio.fail_after(self.timeout_sec):
            health = await dead_backend.health()
            assert not health.ok
            with pytest.raises(BackendUnavailable):
                await dead_backend.chat(self.chat_body(model))
            with pytest.raises(BackendUnavailable):
                await dead_backend.list_models()
            with pytest.raises(BackendUnavailable):
                await _collect(dead_backend.chat_stream(self.chat_body(model)))

    async def test_aclose_is_idempotent(self, dead_backend: InferenceBackend) -> None:
        await dead_backend.aclose()
        await dead_backend.aclose()
