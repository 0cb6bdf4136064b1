"""A deterministic in-memory backend for tests of the node, the gateway and routing strategies.

:class:`FakeBackend` implements :class:`~tooti.backends.protocol.InferenceBackend` without a model
server: it answers with a canned reply split into a fixed number of chunks, can wait between
chunks, can fail on demand, and records every call and every stream's fate (finished, failed or
closed early by the consumer), so tests can assert that cancellation reached the backend.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import anyio
import msgspec

from tooti.backends.protocol import BackendHealth, BackendSettings, JSONObject, LoadSnapshot, ModelInfo
from tooti.errors import BackendError, ModelNotFound

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Sequence

__all__ = ["FakeBackend", "FakeCall", "FakeConfig", "FakeStream"]

_ids = itertools.count(1)


class FakeConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The ``backends.fake`` config section."""

    models: list[str] = msgspec.field(default_factory=lambda: ["fake-model"])
    reply: str = "Hello from the fake backend, one chunk at a time."
    chunks: int = 4
    chunk_delay_sec: float = 0.0
    context_length: int = 2048
    capacity: int = 2


@dataclass
class FakeCall:
    """One call the backend received (``body`` is ``None`` for calls without one)."""

    method: str
    body: JSONObject | None = None


@dataclass
class FakeStream:
    """What became of one ``chat_stream`` call."""

    body: JSONObject
    chunks_sent: int = 0
    state: Literal["open", "finished", "failed", "closed_early"] = "open"


@dataclass
class _Failure:
    error: BackendError
    after_chunks: int | None


@dataclass
class FakeBackend:
    """A configurable, deterministic :class:`~tooti.backends.protocol.InferenceBackend`.

    Args:
        models: model ids served; a request for another model raises :class:`ModelNotFound`.
        reply: the assistant text every chat returns.
        chunks: how many content chunks ``chat_stream`` splits ``reply`` into; each counts as one
            completion token, and ``max_tokens`` cuts the answer to that many chunks.
        chunk_delay_sec: sleep before each streamed chunk (lets tests cancel mid-stream).
        context_length: reported by :meth:`list_models`.
        capacity: reported by :meth:`load`.
        healthy: what :meth:`health` reports.
    """

    name: ClassVar[str] = "fake"
    config_type: ClassVar[type[msgspec.Struct]] = FakeConfig

    models: Sequence[str] = ("fake-model",)
    reply: str = "Hello from the fake backend, one chunk at a time."
    chunks: int = 4
    chunk_delay_sec: float = 0.0
    context_length: int = 2048
    capacity: int = 2
    healthy: bool = True
    calls: list[FakeCall] = field(default_factory=list)
    streams: list[FakeStream] = field(default_factory=list)
    started: bool = False
    closed: bool = False
    _failure: _Failure | None = None

    @classmethod
    def from_config(cls, settings: BackendSettings, config: msgspec.Struct) -> Self:
        """Build from a :class:`FakeConfig` (``settings`` is accepted and ignored)."""
        del settings
        if not isinstance(config, FakeConfig):
            raise TypeError(f"expected FakeConfig, got {type(config).__name__}")
        return cls(
            models=tuple(config.models),
            reply=config.reply,
            chunks=config.chunks,
            chunk_delay_sec=config.chunk_delay_sec,
            context_length=config.context_length,
            capacity=config.capacity,
        )

    # -- test controls ---------------------------------------------------------------------

    def fail_with(self, error: BackendError | None, *, after_chunks: int | None = None) -> None:
        """Make later calls raise ``error``; ``None`` clears it.

        ``after_chunks=None`` raises before any output (every method but :meth:`health`);
        ``after_chunks=k`` lets ``chat_stream`` yield ``k`` content chunks first, then raise.
        """
        self._failure = None if error is None else _Failure(error, after_chunks)

    @property
    def closed_early(self) -> int:
        """How many streams the consumer closed before the end (cancellation reached us)."""
        return sum(1 for s in self.streams if s.state == "closed_early")

    @property
    def tokens_generated(self) -> int:
        """Content chunks streamed so far, over every stream (one chunk = one token)."""
        return sum(s.chunks_sent for s in self.streams)

    @property
    def in_flight(self) -> int:
        """Streams open right now."""
        return sum(1 for s in self.streams if s.state == "open")

    def methods(self) -> list[str]:
        """Names of the calls received so far, in order."""
        return [c.method for c in self.calls]

    # -- InferenceBackend ------------------------------------------------------------------

    async def start(self) -> None:
        """Mark the backend started."""
        self.calls.append(FakeCall("start"))
        self.started = True

    async def health(self) -> BackendHealth:
        """Report ``healthy`` (never raises, as the protocol asks)."""
        self.calls.append(FakeCall("health"))
        return BackendHealth(ok=self.healthy, detail="fake" if self.healthy else "marked unhealthy", latency_ms=0.0)

    async def list_models(self) -> list[ModelInfo]:
        """Return the configured models."""
        self._record("list_models")
        return [ModelInfo(id=m, context_length=self.context_length, owned_by="fake") for m in self.models]

    async def load(self) -> LoadSnapshot:
        """Report the streams open now as in-flight work."""
        self._record("load")
        busy = self.in_flight
        return LoadSnapshot(
            in_flight=min(busy, self.capacity), queued=max(busy - self.capacity, 0), capacity=self.capacity
        )

    async def chat(self, body: JSONObject) -> JSONObject:
        """Return the whole reply as one ``chat.completion``."""
        model = self._check(self._record("chat", body))
        return {
            "id": f"chatcmpl-fake-{next(_ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(self._pieces(body))},
                    "finish_reason": self._finish(body),
                }
            ],
            "usage": self._usage(body),
        }

    def chat_stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        """Stream the reply in ``chunks`` pieces, then a finish chunk carrying ``usage``."""
        self._record("chat_stream", body)
        return self._stream(body)

    async def completion(self, body: JSONObject) -> JSONObject:
        """Return the reply as a ``text_completion``."""
        model = self._check(self._record("completion", body))
        return {
            "id": f"cmpl-fake-{next(_ids)}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {"index": 0, "text": "".join(self._pieces(body)), "finish_reason": self._finish(body), "logprobs": None}
            ],
            "usage": self._usage(body),
        }

    async def embeddings(self, body: JSONObject) -> JSONObject:
        """Return one deterministic 8-dimensional vector per input string (a hash, not semantics)."""
        model = self._check(self._record("embeddings", body))
        raw = body.get("input", "")
        inputs = [raw] if isinstance(raw, str) else list(raw)
        data = [{"object": "embedding", "index": i, "embedding": _vector(str(x))} for i, x in enumerate(inputs)]
        tokens = sum(len(str(x).split()) for x in inputs)
        return {
            "object": "list",
            "model": model,
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    async def aclose(self) -> None:
        """Mark the backend closed (idempotent)."""
        self.calls.append(FakeCall("aclose"))
        self.closed = True

    # -- internals -------------------------------------------------------------------------

    def _record(self, method: str, body: JSONObject | None = None) -> JSONObject:
        self.calls.append(FakeCall(method, body))
        if self._failure is not None and method != "chat_stream":
            raise self._failure.error  # streams fail inside the iterator, like a real HTTP stream
        return body or {}

    def _check(self, body: JSONObject) -> str:
        model = str(body.get("model") or self.models[0])
        if model not in self.models:
            raise ModelNotFound(f"model {model!r} is not served by the fake backend", status_code=404)
        return model

    def _pieces(self, body: JSONObject) -> list[str]:
        """The reply in ``chunks`` pieces, cut to ``max_tokens`` pieces (one piece = one token)."""
        n = max(self.chunks, 1)
        size = -(-len(self.reply) // n) or 1
        pieces = [self.reply[i * size : (i + 1) * size] or " " for i in range(n)]
        return pieces[: self._limit(body)]

    def _limit(self, body: JSONObject) -> int:
        limit = body.get("max_completion_tokens") or body.get("max_tokens")
        n = max(self.chunks, 1)
        return min(n, limit) if isinstance(limit, int) and limit > 0 else n

    def _finish(self, body: JSONObject) -> str:
        return "length" if self._limit(body) < max(self.chunks, 1) else "stop"

    def _usage(self, body: JSONObject) -> dict[str, int]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []) if isinstance(m, dict))
        prompt = prompt or len(str(body.get("prompt", "")).split())
        completion = self._limit(body)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def _stream(self, body: JSONObject) -> AsyncIterator[JSONObject]:
        record = FakeStream(body=body)
        self.streams.append(record)
        try:
            # aclosing: an inner generator left suspended when we are closed early is otherwise
            # finalized by the garbage collector (a ResourceWarning under trio).
            async with aclosing(self._chunks(body, record)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except BackendError:
            record.state = "failed"
            raise
        except BaseException:  # GeneratorExit from aclose(), or cancellation
            record.state = "closed_early"
            raise
        else:
            record.state = "finished"

    async def _chunks(self, body: JSONObject, record: FakeStream) -> AsyncGenerator[JSONObject, None]:
        failure = self._failure
        if failure is not None and failure.after_chunks is None:
            raise failure.error
        model = self._check(body)
        base: dict[str, Any] = {
            "id": f"chatcmpl-fake-{next(_ids)}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        for i, piece in enumerate(self._pieces(body)):
            if failure is not None and failure.after_chunks == i:
                raise failure.error
            if self.chunk_delay_sec > 0:
                await anyio.sleep(self.chunk_delay_sec)
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            record.chunks_sent += 1
        if failure is not None and failure.after_chunks is not None and failure.after_chunks >= record.chunks_sent:
            raise failure.error
        final = {"index": 0, "delta": {}, "finish_reason": self._finish(body)}
        yield {**base, "choices": [final], "usage": self._usage(body)}


def _vector(text: str) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 6) for b in digest[:8]]
