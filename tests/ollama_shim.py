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

import hashlib
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import uvicorn

if TYPE_CHECKING:
    from pathlib import Path

MODEL = "smollm2:latest"
_OPTION_TO_OPENAI = {
    "num_predict": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "top_k": "top_k",
    "min_p": "min_p",
    "seed": "seed",
    "stop": "stop",
    "presence_penalty": "presence_penalty",
    "frequency_penalty": "frequency_penalty",
    "repeat_penalty": "repeat_penalty",
    "repeat_last_n": "repeat_last_n",
    "typical_p": "typical_p",
}
_MAX_BODY = 4 * 1024 * 1024


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def _now() -> str:
    """Ollama's timestamp style: RFC 3339 with nanoseconds."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def _ns(ms: float | None) -> int:
    return int((ms or 0.0) * 1_000_000)


class OllamaShim:
    """The ASGI app. ``llama_url`` serves chat, completions and embeddings (embedding mode on)."""

    def __init__(self, llama_url: str, model_path: Path, *, context_length: int) -> None:
        self.llama_url = llama_url
        self.model_path = model_path
        self.context_length = context_length
        self.digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
        self.modified_at = datetime.fromtimestamp(model_path.stat().st_mtime, UTC).isoformat()
        self.requests: list[tuple[str, str]] = []
        self.disconnects = 0

    # -- ASGI entry -------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        self.requests.append((method, path))
        try:
            await self._route(method, path, receive, send)
        except HttpError as exc:
            await _send_json(send, exc.status, {"error": exc.message})

    async def _route(self, method: str, path: str, receive: Any, send: Any) -> None:
        gets = {"/api/tags": self._tags, "/api/ps": self._ps, "/api/version": self._version}
        posts = {
            "/api/chat": self._chat,
            "/api/generate": self._generate,
            "/api/embed": self._embed,
            "/api/show": self._show,
        }
        if path == "/" and method in ("GET", "HEAD"):
            await _send(send, 200, b"Ollama is running", "text/plain; charset=utf-8", head=method == "HEAD")
        elif path in gets and method == "GET":
            await _send_json(send, 200, gets[path]())
        elif path in posts and method == "POST":
            await posts[path](await _read_json(receive), receive, send)
        elif path in gets or path in posts:
            await _send(send, 405, b"405 method not allowed", "text/plain")
        else:
            await _send(send, 404, b"404 page not found", "text/plain")

    # -- model metadata ---------------------------------------------------------------------

    def _details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "llama",
            "families": ["llama"],
            "parameter_size": "135M",
            "quantization_level": "Q4_1",
        }

    def _entry(self) -> dict[str, Any]:
        size = self.model_path.stat().st_size
        return {
            "name": MODEL,
            "model": MODEL,
            "modified_at": self.modified_at,
            "size": size,
            "digest": self.digest,
            "details": self._details(),
        }

    def _tags(self) -> dict[str, Any]:
        return {"models": [self._entry()]}

    def _ps(self) -> dict[str, Any]:
        expires = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
        entry = {**self._entry(), "expires_at": expires, "size_vram": 0, "context_length": self.context_length}
        del entry["modified_at"]
        return {"models": [entry]}

    def _version(self) -> dict[str, Any]:
        return {"version": "0.12.6"}

    async def _show(self, body: dict[str, Any], receive: Any, send: Any) -> None:
        self._model(body)
        info = {
            "general.architecture": "llama",
            "general.parameter_count": 134515008,
            "llama.context_length": 8192,
            "llama.embedding_length": 576,
        }
        await _send_json(
            send,
            200,
            {
                "license": "Apache-2.0",
                "modelfile": f"# Modelfile generated by the tooti test shim\nFROM {self.model_path}\n",
                "parameters": 'stop "<|im_end|>"',
                "template": "{{ .Prompt }}",
                "details": self._details(),
                "model_info": info,
                "capabilities": ["completion", "embedding"],
                "modified_at": self.modified_at,
            },
        )

    @staticmethod
    def _model(body: dict[str, Any]) -> str:
        name = body.get("model")
        if not isinstance(name, str) or not name:
            raise HttpError(400, "model is required")
        if name not in (MODEL, MODEL.removesuffix(":latest")):
            raise HttpError(404, f"model '{name}' not found")
        return name

    # -- generation -------------------------------------------------------------------------

    async def _chat(self, body: dict[str, Any], receive: Any, send: Any) -> None:
        name = self._model(body)
        messages = body.get("messages") or []
        request = {**_openai_options(body), "messages": [_openai_message(m) for m in messages]}
        if body.get("tools"):
            request["tools"] = body["tools"]
        await self._generate_via(
            name, "/v1/chat/completions", request, body.get("stream", True), receive, send, chat=True
        )

    async def _generate(self, body: dict[str, Any], receive: Any, send: Any) -> None:
        name = self._model(body)
        request = {**_openai_options(body), "prompt": str(body.get("prompt", ""))}
        await self._generate_via(name, "/v1/completions", request, body.get("stream", True), receive, send, chat=False)

    async def _generate_via(
        self, name: str, path: str, request: dict[str, Any], stream: bool, receive: Any, send: Any, *, chat: bool
    ) -> None:
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.llama_url, timeout=120) as client:
            if not stream:
                reply = await _upstream_json(client, path, {**request, "stream": False})
                choice = reply["choices"][0]
                text = choice["message"]["content"] if chat else choice["text"]
                final = _final(
                    name, reply.get("usage", {}), reply.get("timings", {}), choice.get("finish_reason"), started
                )
                await _send_json(send, 200, {**final, **_piece(text, chat=chat)})
                return
            await self._stream(
                client,
                name,
                path,
                {**request, "stream": True, "stream_options": {"include_usage": True}},
                receive,
                send,
                chat=chat,
                started=started,
            )

    async def _stream(
        self,
        client: httpx.AsyncClient,
        name: str,
        path: str,
        request: dict[str, Any],
        receive: Any,
        send: Any,
        *,
        chat: bool,
        started: float,
    ) -> None:
        async with client.stream("POST", path, json=request) as response:
            if response.status_code >= 300:
                raise HttpError(response.status_code, _upstream_message(await response.aread()))
            await send(
                {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/x-ndjson")]}
            )
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_disconnect, receive, tg.cancel_scope)
                await self._relay(response, name, send, chat=chat, started=started)
                tg.cancel_scope.cancel()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch_disconnect(self, receive: Any, scope: anyio.CancelScope) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass
        self.disconnects += 1
        scope.cancel()

    async def _relay(self, response: httpx.Response, name: str, send: Any, *, chat: bool, started: float) -> None:
        usage: dict[str, Any] = {}
        timings: dict[str, Any] = {}
        finish = None
        async for line in response.aiter_lines():
            data = line.removeprefix("data: ").strip()
            if not line.startswith("data: ") or data == "[DONE]":
                continue
            event = json.loads(data)
            if "error" in event:
                await _line(send, {"error": event["error"].get("message", "error")})
                return
            usage, timings = event.get("usage") or usage, event.get("timings") or timings
            for choice in event.get("choices", []):
                finish = choice.get("finish_reason") or finish
                text = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                if text:
                    await _line(send, {"model": name, "created_at": _now(), **_piece(text, chat=chat), "done": False})
        await _line(send, {**_final(name, usage, timings, finish, started), **_piece("", chat=chat)})

    async def _embed(self, body: dict[str, Any], receive: Any, send: Any) -> None:
        name = self._model(body)
        inputs = body.get("input")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not all(isinstance(x, str) for x in inputs):
            raise HttpError(400, "invalid input type")
        started = time.perf_counter()
        async with httpx.AsyncClient(base_url=self.llama_url, timeout=120) as client:
            reply = await _upstream_json(client, "/v1/embeddings", {"input": inputs})
        vectors = [_normalize(d["embedding"][: body.get("dimensions") or None]) for d in reply["data"]]
        await _send_json(
            send,
            200,
            {
                "model": name,
                "embeddings": vectors,
                "total_duration": int((time.perf_counter() - started) * 1e9),
                "load_duration": 1000,
                "prompt_eval_count": reply.get("usage", {}).get("prompt_tokens", 0),
            },
        )


# -- translation helpers ------------------------------------------------------------------------


def _openai_options(body: dict[str, Any]) -> dict[str, Any]:
    options = body.get("options") or {}
    out = {_OPTION_TO_OPENAI[k]: v for k, v in options.items() if k in _OPTION_TO_OPENAI}
    fmt = body.get("format")
    if fmt == "json":
        out["response_format"] = {"type": "json_object"}
    elif isinstance(fmt, dict):
        out["response_format"] = {"type": "json_schema", "json_schema": {"schema": fmt}}
    return out


def _openai_message(message: dict[str, Any]) -> dict[str, Any]:
    out = {"role": message.get("role"), "content": message.get("content", "")}
    if message.get("tool_calls"):
        out["tool_calls"] = [
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {"name": c["function"]["name"], "arguments": json.dumps(c["function"]["arguments"])},
            }
            for i, c in enumerate(message["tool_calls"])
        ]
    return out


def _piece(text: str, *, chat: bool) -> dict[str, Any]:
    return {"message": {"role": "assistant", "content": text}} if chat else {"response": text}


def _final(
    name: str, usage: dict[str, Any], timings: dict[str, Any], finish: str | None, started: float
) -> dict[str, Any]:
    return {
        "model": name,
        "created_at": _now(),
        "done": True,
        "done_reason": "length" if finish == "length" else "stop",
        "total_duration": int((time.perf_counter() - started) * 1e9),
        "load_duration": 1000,
        "prompt_eval_count": int(usage.get("prompt_tokens", 0)),
        "prompt_eval_duration": _ns(timings.get("prompt_ms")),
        "eval_count": int(usage.get("completion_tokens", 0)),
        "eval_duration": _ns(timings.get("predicted_ms")),
    }


def _normalize(vector: list[float]) -> list[float]:
    norm = sum(x * x for x in vector) ** 0.5 or 1.0
    return [x / norm for x in vector]


def _upstream_message(raw: bytes) -> str:
    try:
        payload = json.loads(raw)
    except json.JSONDecodeError:
        return raw.decode(errors="replace")
    error = payload.get("error") if isinstance(payload, dict) else None
    return str(error.get("message") if isinstance(error, dict) else error or payload)


async def _upstream_json(client: httpx.AsyncClient, path: str, request: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(path, json=request)
    if response.status_code >= 300:
        raise HttpError(response.status_code, _upstream_message(response.content))
    return response.json()  # type: ignore[no-any-return]


# -- ASGI plumbing ------------------------------------------------------------------------------


async def _read_json(receive: Any) -> dict[str, Any]:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
        if size > _MAX_BODY:
            raise HttpError(413, "request body too large")
    try:
        body = json.loads(b"".join(chunks) or b"{}")
    except json.JSONDecodeError as exc:
        raise HttpError(400, f"invalid character in request body: {exc.msg}") from None
    if not isinstance(body, dict):
        raise HttpError(400, "json: cannot unmarshal into Go value of type api.Request")
    return body


async def _send(send: Any, status: int, body: bytes, content_type: str, *, head: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _send_json(send: Any, status: int, payload: dict[str, Any]) -> None:
    await _send(send, status, json.dumps(payload).encode(), "application/json; charset=utf-8")


async def _line(send: Any, payload: dict[str, Any]) -> None:
    await send({"type": "http.response.body", "body": json.dumps(payload).encode() + b"\n", "more_body": True})


# -- running it ---------------------------------------------------------------------------------


class ShimServer:
    """Runs :class:`OllamaShim` on uvicorn in a thread, on a free loopback port."""

    def __init__(self, app: OllamaShim) -> None:
        self.app = app
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        config = uvicorn.Config(app, lifespan="off", ws="none", http="h11", log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the Ollama shim did not start")
            time.sleep(0.02)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(30)
        self._sock.close()
