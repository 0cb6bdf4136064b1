"""An async HTTP load generator for OpenAI-style chat requests, measuring what clients feel.

Each sample records total latency, time to first byte of content (TTFT, streams only) and
completion tokens, so benchmarks can compare direct and through-gateway paths request by request.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx

__all__ = ["Sample", "Stats", "chat_body", "chat_once", "run_load", "stats"]


@dataclass
class Sample:
    """One request's outcome."""

    ok: bool
    latency_ms: float
    ttft_ms: float | None = None
    tokens: int = 0
    error: str = ""
    error_event: bool = False
    """The stream ended with an explicit SSE error event (as opposed to a silent cut)."""
    node: str = ""
    gaps_ms: list[float] = field(default_factory=list, repr=False)
    """Time between consecutive content chunks at the client (inter-token smoothness)."""


@dataclass
class Stats:
    """Summary of a list of numbers."""

    n: int
    p50: float
    p99: float
    mean: float
    values: list[float] = field(repr=False, default_factory=list)


def stats(values: list[float]) -> Stats:
    """p50/p99/mean of ``values`` (nearest-rank percentiles)."""
    if not values:
        return Stats(0, float("nan"), float("nan"), float("nan"))
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]

    return Stats(len(ordered), pct(50), pct(99), statistics.fmean(ordered), ordered)


def chat_body(model: str, *, stream: bool, max_tokens: int) -> dict[str, Any]:
    """The chat request every benchmark sends."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "Count from one to twenty."}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": stream,
    }
    if stream:
        body["stream_options"] = {"include_usage": True}
    return body


async def _stream(client: httpx.AsyncClient, url: str, body: dict[str, Any], t0: float) -> Sample:
    ttft: float | None = None
    tokens = 0
    gaps: list[float] = []
    last: float | None = None
    async with client.stream("POST", url, json=body) as response:
        node = response.headers.get("x-tooti-node", "")
        if response.status_code != 200:
            detail = (await response.aread())[:200].decode(errors="replace")
            error = f"http {response.status_code}: {detail}"
            return Sample(False, (time.perf_counter() - t0) * 1e3, error=error, node=node)
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[6:]
            if data == "[DONE]":
                return Sample(True, (time.perf_counter() - t0) * 1e3, ttft, tokens, node=node, gaps_ms=gaps)
            event = json.loads(data)
            if "error" in event:
                return Sample(False, (time.perf_counter() - t0) * 1e3, ttft, tokens, "error event", True, node)
            for choice in event.get("choices", []):
                if choice.get("delta", {}).get("content"):
                    now = time.perf_counter()
                    ttft = ttft if ttft is not None else (now - t0) * 1e3
                    if last is not None:
                        gaps.append((now - last) * 1e3)
                    last = now
                    tokens += 1
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    return Sample(False, (time.perf_counter() - t0) * 1e3, ttft, tokens, "stream cut without [DONE]", node=node)


async def chat_once(
    client: httpx.AsyncClient, base_url: str, model: str, *, stream: bool, max_tokens: int = 32
) -> Sample:
    """Send one chat completion and measure it; never raises for transport errors."""
    url = f"{base_url}/v1/chat/completions"
    body = chat_body(model, stream=stream, max_tokens=max_tokens)
    t0 = time.perf_counter()
    try:
        if stream:
            return await _stream(client, url, body, t0)
        response = await client.post(url, json=body)
        latency = (time.perf_counter() - t0) * 1e3
        node = response.headers.get("x-tooti-node", "")
        if response.status_code != 200:
            code = (response.json().get("error") or {}).get("code") if response.content[:1] == b"{" else None
            return Sample(False, latency, error=f"http {response.status_code} {code or ''}".strip(), node=node)
        usage = response.json().get("usage") or {}
        return Sample(True, latency, tokens=int(usage.get("completion_tokens", 0)), node=node)
    except httpx.HTTPError as exc:
        return Sample(False, (time.perf_counter() - t0) * 1e3, error=type(exc).__name__)


async def run_load(
    base_urls: list[str],
    model: str,
    *,
    requests: int,
    concurrency: int,
    stream: bool,
    max_tokens: int = 32,
    timeout_s: float = 120.0,
) -> dict[str, list[Sample]]:
    """Send ``requests`` requests per base URL, interleaving the URLs request by request.

    Interleaving (a, b, a, b, ...) spreads any machine noise evenly over the compared paths.
    """
    results: dict[str, list[Sample]] = {u: [] for u in base_urls}
    order = [u for _ in range(requests) for u in base_urls]
    limits = httpx.Limits(max_connections=concurrency * len(base_urls), max_keepalive_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits) as client:
        send, receive = anyio.create_memory_object_stream[str](len(order))
        for url in order:
            send.send_nowait(url)
        send.close()

        async def worker() -> None:
            async with receive.clone() as jobs:
                async for url in jobs:
                    results[url].append(await chat_once(client, url, model, stream=stream, max_tokens=max_tokens))

        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(worker)
        receive.close()
    return results
