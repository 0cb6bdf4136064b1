"""Fuzz: schemathesis against a real gateway's OpenAPI schema, random frames against a node's infer protocol."""

from __future__ import annotations

import asyncio
import random
import struct
from typing import TYPE_CHECKING, Any

from cluster import Cluster, free_port, wait_nodes

if TYPE_CHECKING:
    from pathlib import Path

MODEL = "fast-1"


def _schemathesis(base_url: str, max_examples: int) -> dict[str, Any]:
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{base_url}/schema/openapi.json")
    statuses: dict[str, int] = {}
    server_errors: list[str] = []

    def check(operation: Any) -> None:
        @given(case=operation.as_strategy())
        @settings(max_examples=max_examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def run(case: Any) -> None:
            response = case.call(timeout=30)
            key = str(response.status_code)
            statuses[key] = statuses.get(key, 0) + 1
            if response.status_code >= 500:
                server_errors.append(f"{operation.method.upper()} {operation.path}: {response.status_code}")

        run()

    for result in schema.get_all_operations():
        check(result.ok())
    return {
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "server_errors_5xx": len(server_errors),
        "examples_5xx": server_errors[:5],
    }


def _frames(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:  # random bytes, random length prefix
        return struct.pack(">I", rng.randrange(1 << 32)) + rng.randbytes(rng.randrange(64))
    if kind == 1:  # a well-framed payload of garbage
        payload = rng.randbytes(rng.randrange(1, 512))
        return struct.pack(">I", len(payload)) + payload
    if kind == 2:  # announces more than the cap
        return struct.pack(">I", 4 * 1024 * 1024 + rng.randrange(1, 1 << 20))
    if kind == 3:  # truncated
        return struct.pack(">I", 100) + rng.randbytes(rng.randrange(99))
    import msgspec  # valid msgpack, wrong shape

    payload = msgspec.msgpack.encode({"t": "request", "model": rng.random(), "body": [1, 2]})
    return struct.pack(">I", len(payload)) + payload


def _fuzz_frames(node_addr: str, node_peer: str, count: int, seed: int) -> dict[str, Any]:
    import trio
    from libp2p.peer.id import ID

    from tooti.p2p.identity import generate_identity
    from tooti.p2p.runtime import P2PRuntime, RuntimeSettings
    from tooti.p2p.safestream import open_stream, reset_stream
    from tooti.wire.infer import PROTOCOL_ID, Done, InferRequest

    rng = random.Random(seed)
    out: dict[str, Any] = {"frames_sent": 0, "streams_reset_by_node": 0, "answered": 0}

    async def main() -> None:
        client = P2PRuntime(generate_identity(), RuntimeSettings())
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            await client.connect(node_addr)
            peer = ID.from_base58(node_peer)
            for _ in range(count):
                stream = await open_stream(client.host, peer, PROTOCOL_ID)
                try:
                    await stream.write(_frames(rng))
                    await stream.close_write()
                    with trio.move_on_after(5):
                        while await stream.read(4096):
                            out["answered"] += 1
                except Exception:  # noqa: BLE001 - a reset is the expected answer to garbage
                    out["streams_reset_by_node"] += 1
                finally:
                    await reset_stream(stream)
                out["frames_sent"] += 1
            request = InferRequest(
                request_id="fuzz-check", model=MODEL, body={"messages": [{"role": "user", "content": "hi"}]}
            )
            frames = [f async for f in client.request(node_peer, request)]
            out["valid_request_after_fuzz_ok"] = isinstance(frames[-1], Done)
            nursery.cancel_scope.cancel()

    trio.run(main)
    return out


async def fuzz(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Both fuzzers against real processes; counts of requests, 5xx and crashes."""
    cluster = Cluster(workdir)
    try:
        upstream = cluster.upstream(chunks=4)
        gateway = cluster.gateway()
        port = free_port()
        node = cluster.node("vllm", upstream, [gateway.p2p_addr], tcp_port=port)
        wait_nodes(gateway, {node.peer_id}, timeout_s=90)
        schema = await asyncio.to_thread(_schemathesis, gateway.base_url, 10 if quick else 100)
        addr = f"/ip4/127.0.0.1/tcp/{port}/p2p/{node.peer_id}"
        frames = await asyncio.to_thread(_fuzz_frames, addr, node.peer_id, 20 if quick else 300, 7)
        frames["node_crashed"] = not node.proc.alive()
        schema["gateway_crashed"] = not gateway.proc.alive()
        return {"openapi": schema, "infer_frames": frames}
    finally:
        cluster.close()
