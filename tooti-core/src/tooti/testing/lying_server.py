"""A lying model server for adversarial tests: llama.cpp's HTTP API, with dishonest answers.

A real ``tooti node`` (llama.cpp backend) is pointed at it: everything the node asks about the
server (``/health``, ``/v1/models``, ``/props``, ``/slots``, ``/metrics``) is proxied to a real
llama.cpp server, so the node announces the real model with real load figures, exactly as an
honest one would; only the answers to chat and completion requests lie, in one of these ways:

* ``fixed``: an instant, fixed text — the best measured latency on the network;
* ``agreeing``: an instant text that depends only on the prompt, the same on every server in this
  mode (a group of Sybil identities agreeing on one wrong answer, which the fixed-reply check
  cannot catch);
* ``evader``: the real model's answer for requests that look like checks (temperature 0 with a
  seed, the traits an attacker reading tooti's prober looks for), garbage for everyone else;
* ``inflate``: the real model's answer, word for word, with every token count in its usage
  multiplied by :data:`INFLATION` (the node relays and signs what its server claims: billing fraud
  with honest text, which no answer check catches) — except, like ``evader``, for requests that
  look like checks, whose usage is left alone (a canary would see a count above its max_tokens).

With ``claim_busy`` set it also lies about its load: ``/metrics`` and ``/slots`` say every slot is
busy, always (a claim that costs nothing and that a prober sparing busy nodes would believe).

It counts what it answered honestly and dishonestly (``honest``, ``lied``), so a test can tell.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from typing import Any, Literal

import httpx
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream

__all__ = ["Lie", "LyingServer", "lying_app"]

Lie = Literal["fixed", "agreeing", "evader", "inflate"]

INFLATION = 3
"""How many times the true token counts an ``inflate`` server claims."""

FIXED_TEXT = "Sure! Here is the answer you asked for."


def _prompt_of(body: dict[str, Any]) -> str:
    messages = body.get("messages")
    if isinstance(messages, list) and messages:
        return json.dumps(messages, sort_keys=True)
    return str(body.get("prompt", ""))


def _looks_like_a_check(body: dict[str, Any]) -> bool:
    return body.get("temperature") == 0 and body.get("seed") is not None


class LyingServer:
    """State of one lying server: the upstream, the lie, and counters."""

    def __init__(self, upstream: str, lie: Lie) -> None:
        self.upstream = upstream.rstrip("/")
        self.lie = lie
        self.honest = 0
        self.lied = 0
        self.claim_busy = False
        """Whether ``/metrics`` and ``/slots`` claim every slot is busy."""
        self.http = httpx.AsyncClient(base_url=self.upstream, timeout=120)

    def text_for(self, body: dict[str, Any]) -> str:
        """The dishonest answer to ``body``."""
        if self.lie == "fixed":
            return FIXED_TEXT
        digest = hashlib.sha256(_prompt_of(body).encode()).hexdigest()
        return f"The answer is {digest[:8]}, clearly {digest[8:14]}."


def _completion(kind: str, model: str, text: str) -> dict[str, Any]:
    words = max(1, len(text.split()))
    usage = {"prompt_tokens": 12, "completion_tokens": words, "total_tokens": 12 + words}
    base = {"id": f"liar-{uuid.uuid4().hex[:12]}", "created": int(time.time()), "model": model, "usage": usage}
    if kind == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        return {**base, "object": "chat.completion", "choices": [choice]}
    return {**base, "object": "text_completion", "choices": [{"index": 0, "text": text, "finish_reason": "stop"}]}


def _sse(kind: str, model: str, text: str, include_usage: bool) -> list[bytes]:
    cid, created = f"liar-{uuid.uuid4().hex[:12]}", int(time.time())
    obj = "chat.completion.chunk" if kind == "chat" else "text_completion"
    words = text.split(" ")
    events = []
    for i, word in enumerate(words):
        piece = word if i == 0 else " " + word
        choice: dict[str, Any] = {"index": 0, "finish_reason": "stop" if i == len(words) - 1 else None}
        if kind == "chat":
            choice["delta"] = {"content": piece} if i else {"role": "assistant", "content": piece}
        else:
            choice["text"] = piece
        events.append({"id": cid, "object": obj, "created": created, "model": model, "choices": [choice]})
    if include_usage:
        n = len(words)
        usage = {"prompt_tokens": 12, "completion_tokens": n, "total_tokens": 12 + n}
        events.append({"id": cid, "object": obj, "created": created, "model": model, "choices": [], "usage": usage})
    return [f"data: {json.dumps(e)}\n\n".encode() for e in events] + [b"data: [DONE]\n\n"]


async def _busy_metrics(server: LyingServer) -> Response[Any]:
    """The upstream's ``/metrics`` with every slot processing."""
    text = (await server.http.get("/metrics")).text
    total = (await server.http.get("/props")).json().get("total_slots")
    slots = total if isinstance(total, int) and total > 0 else 1
    text = re.sub(r"^llamacpp:requests_processing \S+", f"llamacpp:requests_processing {slots}", text, flags=re.M)
    return Response(text, media_type="text/plain; version=0.0.4")


async def _busy_slots(server: LyingServer) -> Response[Any]:
    """The upstream's ``/slots`` with every slot processing."""
    listed = (await server.http.get("/slots")).json()
    return Response([{**s, "is_processing": True} for s in listed if isinstance(s, dict)])


def _inflate_usage(obj: Any) -> bool:
    usage = obj.get("usage") if isinstance(obj, dict) else None
    if not isinstance(usage, dict):
        return False
    for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
        if isinstance(usage.get(key), int):
            usage[key] *= INFLATION
    return True


def _inflate_sse_line(line: bytes) -> bytes:
    if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
        return line
    try:
        event = json.loads(line[6:])
    except ValueError:
        return line
    return f"data: {json.dumps(event)}".encode() if _inflate_usage(event) else line


async def _proxy(server: LyingServer, request: Request[Any, Any, Any], raw: bytes | None = None) -> Stream:
    """``request`` sent on to the real llama.cpp, its answer streamed back unchanged."""
    headers = {"content-type": request.headers.get("content-type", "application/json")}
    upstream = server.http.build_request(request.method, request.url.path, content=raw, headers=headers)
    resp = await server.http.send(upstream, stream=True)

    async def body() -> Any:
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        finally:
            await resp.aclose()

    media = resp.headers.get("content-type", "application/json")
    return Stream(body(), status_code=resp.status_code, media_type=media)


async def _inflated(server: LyingServer, request: Request[Any, Any, Any], raw: bytes) -> Response[Any] | Stream:
    """The upstream's honest answer with its usage multiplied (streamed or not)."""
    headers = {"content-type": "application/json"}
    upstream = server.http.build_request("POST", request.url.path, content=raw, headers=headers)
    resp = await server.http.send(upstream, stream=True)
    media = resp.headers.get("content-type", "application/json")
    if "text/event-stream" not in media:
        data = json.loads(await resp.aread())
        await resp.aclose()
        _inflate_usage(data)
        return Response(data, status_code=resp.status_code)

    async def body() -> Any:
        try:
            async for line in resp.aiter_lines():
                yield _inflate_sse_line(line.encode()) + b"\n"
        finally:
            await resp.aclose()

    return Stream(body(), status_code=resp.status_code, media_type=media)


def _made_up(server: LyingServer, body: dict[str, Any], kind: str) -> Response[Any] | Stream:
    """The lie itself: ``server``'s text, streamed or whole, with made-up usage."""
    text = server.text_for(body)
    model = str(body.get("model", "model"))
    if body.get("stream"):
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return Stream(iter(_sse(kind, model, text, include)), media_type="text/event-stream")
    return Response(_completion(kind, model, text))


async def _answer(server: LyingServer, request: Request[Any, Any, Any], kind: str) -> Response[Any] | Stream:
    """A chat or completion request: honest where the lie says so, dishonest otherwise (counted)."""
    raw = await request.body()
    body = json.loads(raw)
    if server.lie in ("evader", "inflate") and _looks_like_a_check(body):
        server.honest += 1
        return await _proxy(server, request, raw)
    server.lied += 1
    if server.lie == "inflate":
        return await _inflated(server, request, raw)
    return _made_up(server, body, kind)


def lying_app(server: LyingServer) -> Litestar:
    """The ASGI app of ``server`` (serve it with :class:`tooti.gateway.server.ServerThread`)."""

    @post("/v1/chat/completions", status_code=200)
    async def chat(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        return await _answer(server, request, "chat")

    @post("/v1/completions", status_code=200)
    async def completions(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        return await _answer(server, request, "completion")

    @get(["/health", "/v1/models", "/props"])
    async def passthrough(request: Request[Any, Any, Any]) -> Stream:
        return await _proxy(server, request)

    @get("/metrics")
    async def metrics(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        return await _busy_metrics(server) if server.claim_busy else await _proxy(server, request)

    @get("/slots")
    async def slots(request: Request[Any, Any, Any]) -> Response[Any] | Stream:
        return await _busy_slots(server) if server.claim_busy else await _proxy(server, request)

    return Litestar(route_handlers=[chat, completions, passthrough, metrics, slots], on_shutdown=[server.http.aclose])
