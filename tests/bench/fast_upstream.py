"""A minimal, fast OpenAI-compatible upstream speaking vLLM's dialect, for benchmarks.

It answers from canned text with no model behind it, so a benchmark through gateway → libp2p → node
→ this server measures tooti's own cost. Raw asyncio HTTP/1.1 with keep-alive: a framework here would
add its own overhead to every measurement. Run: ``python fast_upstream.py --port 8199 --chunks 32``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

MODEL = "fast-1"
_OK = b"HTTP/1.1 200 OK\r\n"


def _response(body: bytes, content_type: bytes = b"application/json") -> bytes:
    head = _OK + b"content-type: " + content_type + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n"
    return head + body


def _chat(chunks: int) -> bytes:
    text = " ".join(["tok"] * chunks)
    return json.dumps(
        {
            "id": "chatcmpl-fast",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks},
        }
    ).encode()


def _sse_events(chunks: int) -> list[bytes]:
    base = {"id": "chatcmpl-fast", "object": "chat.completion.chunk", "created": int(time.time()), "model": MODEL}
    events = [{**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
    events += [
        {**base, "choices": [{"index": 0, "delta": {"content": " tok"}, "finish_reason": None}]} for _ in range(chunks)
    ]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    usage = {"prompt_tokens": 8, "completion_tokens": chunks, "total_tokens": 8 + chunks}
    events.append({**base, "choices": [], "usage": usage})
    return [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]


def _chunked(piece: bytes) -> bytes:
    return f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


class Upstream:
    """Serves /health, /v1/models, /metrics and /v1/chat/completions (stream and not)."""

    def __init__(self, chunks: int, chunk_delay: float) -> None:
        self.chunks = chunks
        self.chunk_delay = chunk_delay
        self.requests = 0
        self._models = json.dumps(
            {"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "vllm", "max_model_len": 2048}]}
        ).encode()
        self._chat = _chat(chunks)
        self._events = _sse_events(chunks)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one keep-alive connection until the client closes it."""
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, path, _ = request_line.split(" ", 2)
                headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines if h)}
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests += 1
                await self._route(method, path, body, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _route(self, method: str, path: str, body: bytes, writer: asyncio.StreamWriter) -> None:
        if path == "/health":
            writer.write(_response(b""))
        elif path == "/v1/models":
            writer.write(_response(self._models))
        elif path == "/metrics":
            metrics = b"vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n"
            writer.write(_response(metrics, b"text/plain"))
        elif method == "POST" and path == "/v1/chat/completions":
            if json.loads(body).get("stream"):
                await self._stream(writer)
                return
            writer.write(_response(self._chat))
        else:
            writer.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()

    async def _stream(self, writer: asyncio.StreamWriter) -> None:
        """The role chunk, then one token every ``chunk_delay``; the finish, usage and ``[DONE]``
        events and the end of the body follow the last token at once, as vLLM sends them (its
        generator yields them back to back and the server ends the body right after)."""
        writer.write(_OK + b"content-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        for i, event in enumerate(self._events):  # role, tokens, finish, usage, [DONE]
            writer.write(_chunked(event))
            if self.chunk_delay and i < self.chunks:  # a pause before each token
                await writer.drain()
                await asyncio.sleep(self.chunk_delay)  # the fake model's token pace, a benchmark parameter
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def serve(port: int, chunks: int, chunk_delay: float, ready: asyncio.Event | None = None) -> None:
    """Serve on 127.0.0.1:``port`` until cancelled."""
    upstream = Upstream(chunks, chunk_delay)
    server = await asyncio.start_server(upstream.handle, "127.0.0.1", port)
    if ready is not None:
        ready.set()
    async with server:
        await server.serve_forever()


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between streamed chunks")
    args = parser.parse_args()
    print(f"LISTENING 127.0.0.1:{args.port}", flush=True)  # noqa: T201 - the parent process waits for this line
    asyncio.run(serve(args.port, args.chunks, args.chunk_delay))


if __name__ == "__main__":
    main()
