"""Render benchmark results as markdown, each figure beside its target, with the machine described."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    """CPU model, cores, memory, OS and Python of this machine."""
    model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gib = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        kib = int(meminfo.read_text().split()[1])
        mem_gib = round(kib / 1024 / 1024, 1)
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": mem_gib,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }


def _get(results: dict[str, Any], path: str) -> Any:
    value: Any = results
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".")
    return str(value)


# (section, label, path in results, target text)
ROWS: list[tuple[str, str, str, str]] = [
    (
        "Overhead (fast upstream)",
        "added latency p50, c=16 streams (ms)",
        "overhead.fast_c16_stream.added_p50_ms",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "added latency p99, c=16 streams (ms)",
        "overhead.fast_c16_stream.added_p99_ms",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "TTFT added p50, c=16 streams (ms)",
        "overhead.fast_c16_stream.ttft_added_p50_ms",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "TTFT added p99, c=16 streams (ms)",
        "overhead.fast_c16_stream.ttft_added_p99_ms",
        "-",
    ),
    ("Overhead (fast upstream)", "added latency p50, c=1 streams (ms)", "overhead.fast_c1_stream.added_p50_ms", "-"),
    ("Overhead (fast upstream)", "added latency p99, c=1 streams (ms)", "overhead.fast_c1_stream.added_p99_ms", "-"),
    (
        "Overhead (fast upstream)",
        "added latency p50, c=1 non-stream (ms)",
        "overhead.fast_c1_whole.added_p50_ms",
        "≤ 2.5",
    ),
    (
        "Overhead (fast upstream)",
        "TTFT added p50, c=1 streams (ms)",
        "overhead.fast_c1_stream.ttft_added_p50_ms",
        "≤ 3",
    ),
    (
        "Overhead (fast upstream)",
        "added latency p50, c=16 non-stream (ms)",
        "overhead.fast_c16_whole.added_p50_ms",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "streamed tokens/s vs direct, c=16",
        "overhead.fast_c16_stream.tokens_per_s_ratio",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "each arm alone: added latency p50, c=16 streams (ms)",
        "overhead.fast_c16_stream_alone.added_p50_ms",
        "≤ 10",
    ),
    (
        "Overhead (fast upstream)",
        "each arm alone: added latency p99, c=16 streams (ms)",
        "overhead.fast_c16_stream_alone.added_p99_ms",
        "≤ 30",
    ),
    (
        "Overhead (fast upstream)",
        "each arm alone: streamed tokens/s vs direct, c=16",
        "overhead.fast_c16_stream_alone.tokens_per_s_ratio",
        "≥ 0.9",
    ),
    (
        "Overhead (fast upstream)",
        "each arm alone: load generator",
        "overhead.fast_c16_stream_alone.client",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "each arm alone: streams failed or cut through tooti",
        "overhead.fast_c16_stream_alone.failed_gateway",
        "0",
    ),
    (
        "Overhead (fast upstream)",
        "each arm alone: gateway CPU s per 1,000 streams, c=16",
        "overhead.fast_c16_stream_alone.gateway_cpu_s_per_1000",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "each arm alone: node CPU s per 1,000 streams, c=16",
        "overhead.fast_c16_stream_alone.node_cpu_s_per_1000",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "gateway CPU s per 1,000 streams, c=16",
        "overhead.fast_c16_stream.gateway_cpu_s_per_1000",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "node CPU s per 1,000 streams, c=16",
        "overhead.fast_c16_stream.node_cpu_s_per_1000",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "gateway CPU s per 1,000 requests, c=16 non-stream",
        "overhead.fast_c16_whole.gateway_cpu_s_per_1000",
        "-",
    ),
    (
        "Overhead (fast upstream)",
        "node CPU s per 1,000 requests, c=16 non-stream",
        "overhead.fast_c16_whole.node_cpu_s_per_1000",
        "-",
    ),
    ("Overhead (llama.cpp, SmolLM2)", "added latency p50, c=1 (ms)", "overhead.llamacpp_c1_stream.added_p50_ms", "-"),
    ("Overhead (llama.cpp, SmolLM2)", "TTFT added p50, c=1 (ms)", "overhead.llamacpp_c1_stream.ttft_added_p50_ms", "-"),
    (
        "Overhead (llama.cpp, SmolLM2)",
        "added latency p50, c=16 (ms)",
        "overhead.llamacpp_c16_stream.added_p50_ms",
        "≤ 3",
    ),
    (
        "Overhead (llama.cpp, SmolLM2)",
        "added latency p99, c=16 (ms)",
        "overhead.llamacpp_c16_stream.added_p99_ms",
        "≤ 15",
    ),
    (
        "Overhead (llama.cpp, SmolLM2)",
        "streamed tokens/s vs direct, c=1",
        "overhead.llamacpp_c1_stream.tokens_per_s_ratio",
        "≥ 0.98",
    ),
    (
        "Overhead (llama.cpp, SmolLM2)",
        "streamed tokens/s vs direct, c=16",
        "overhead.llamacpp_c16_stream.tokens_per_s_ratio",
        "≥ 0.98",
    ),
    ("Throughput", "non-stream req/s, gateway on one core, c=32", "throughput.c32_req_per_s", "≥ 500"),
    ("Throughput", "non-stream req/s, gateway on one core, c=8", "throughput.c8_req_per_s", "-"),
    ("Throughput", "failed requests at c=32", "throughput.c32_failed", "0"),
    ("Throughput", "gateway CPU s per 1,000 requests, c=32", "throughput.c32_gateway_cpu_s_per_1000", "-"),
    ("Throughput", "node CPU s per 1,000 requests, c=32", "throughput.c32_node_cpu_s_per_1000", "-"),
    ("Throughput", "direct upstream req/s (client ceiling)", "throughput.direct_upstream_req_per_s", "-"),
    ("Throughput", "load generator", "throughput.client", "-"),
    ("Heartbeat flood", "gateway CPU, idle, no traffic (ms per s)", "flood.idle_gateway_cpu_ms_per_s", "-"),
    (
        "Heartbeat flood",
        "gateway CPU during a 20 s flood, no user traffic (ms per s)",
        "flood.flooded_gateway_cpu_ms_per_s",
        "-",
    ),
    ("Heartbeat flood", "non-stream req/s, c=8, no flood (mean of before and after)", "flood.baseline_req_per_s", "-"),
    ("Heartbeat flood", "non-stream req/s, c=8, one peer flooding heartbeats", "flood.flood_req_per_s", "-"),
    ("Heartbeat flood", "throughput under flood / without", "flood.flood_throughput_ratio", "≥ 0.95"),
    ("Heartbeat flood", "flooder's heartbeats published per s", "flood.flooder_published_per_s", "-"),
    ("Heartbeat flood", "gateway CPU s per 1,000 requests, no flood", "flood.baseline_gateway_cpu_s_per_1000", "-"),
    ("Heartbeat flood", "gateway CPU s per 1,000 requests, flood", "flood.flood_gateway_cpu_s_per_1000", "-"),
    ("Heartbeat flood", "heartbeats rate-limited at the gateway", "flood.gateway_heartbeats_rate_limited", "-"),
    ("Heartbeat flood", "seconds the flooder stayed connected", "flood.flooder_connected_s", "-"),
    ("Heartbeat flood", "flooder's dials after being cut off", "flood.flooder_dials", "-"),
    ("Heartbeat flood", "times the flooder got back into the mesh", "flood.flooder_rounds", "-"),
    ("Heartbeat flood", "peers banned by the gateway", "flood.gateway_heartbeats_peers_banned", "-"),
    ("Failover", "requests failed before first token", "failover.failed_before_first_token", "0"),
    ("Failover", "streams cut mid-way", "failover.streams_cut_midway", "-"),
    ("Failover", "… of which ended with an error event", "failover.cut_with_error_event", "all"),
    ("Failover", "… of which cut silently", "failover.cut_silently", "0"),
    (
        "Failover",
        "last new attempt on the killed node after SIGKILL (s)",
        "failover.last_attempt_on_killed_node_s",
        "-",
    ),
    (
        "Failover",
        "killed node gone from the registry after (s)",
        "failover.registry_dropped_killed_node_s",
        "≤ 3 intervals (3 s)",
    ),
    (
        "Scale (simulated)",
        "heartbeat rate limit + decode + bounds + route table update (µs/message, mean), 10k nodes",
        "scale.simulated.heartbeat_decode_and_update_us",
        "≤ 20",
    ),
    ("Scale (simulated)", "heartbeat processing p99 (µs), 10k nodes", "scale.simulated.heartbeat_receive_p99_us", "-"),
    ("Scale (simulated)", "registry snapshot (µs), 10k nodes", "scale.simulated.registry_snapshot_us", "-"),
    (
        "Scale (simulated)",
        "routing decision p50, balanced (µs), 10k nodes",
        "scale.simulated.decide_balanced_us",
        "≤ 50",
    ),
    (
        "Scale (simulated)",
        "routing decision p99, balanced (µs), 10k nodes",
        "scale.simulated.decide_balanced_p99_us",
        "-",
    ),
    ("Scale (simulated)", "routing decision p50, latency (µs), 10k nodes", "scale.simulated.decide_latency_us", "≤ 50"),
    ("Scale (simulated)", "routing decision p50, cost (µs), 10k nodes", "scale.simulated.decide_cost_us", "≤ 50"),
    (
        "Scale (simulated)",
        "routing decision p50, least-loaded (µs), 10k nodes",
        "scale.simulated.decide_least-loaded_us",
        "≤ 50",
    ),
    ("Scale (simulated)", "routing decision p50, simple (µs), 10k nodes", "scale.simulated.decide_simple_us", "≤ 50"),
    ("Fuzz", "OpenAPI requests tried (schemathesis)", "fuzz.openapi.requests", "-"),
    ("Fuzz", "OpenAPI 5xx answers", "fuzz.openapi.server_errors_5xx", "0"),
    ("Fuzz", "gateway crashed", "fuzz.openapi.gateway_crashed", "False"),
    ("Fuzz", "random/malformed infer frames sent", "fuzz.infer_frames.frames_sent", "-"),
    ("Fuzz", "node crashed", "fuzz.infer_frames.node_crashed", "False"),
    ("Fuzz", "valid request served after the fuzzing", "fuzz.infer_frames.valid_request_after_fuzz_ok", "True"),
    ("Accounting", "p50 without a store, c=1 non-stream (ms)", "accounting.p50_ms.none", "-"),
    (
        "Accounting",
        "added p50, SQLite store, key without budget (ms)",
        "accounting.sqlite_unbudgeted_added_p50_ms",
        "-",
    ),
    ("Accounting", "added p50, SQLite store, key with a budget (ms)", "accounting.sqlite_budget_added_p50_ms", "-"),
    (
        "Accounting",
        "added p50, PostgreSQL store, key with a budget (ms)",
        "accounting.postgres_budget_added_p50_ms",
        "-",
    ),
    (
        "Affinity (2 llama.cpp nodes)",
        "TTFT p50, turns 2+, affinity on (ms)",
        "affinity.affinity_on.ttft_later_turns_p50_ms",
        "-",
    ),
    (
        "Affinity (2 llama.cpp nodes)",
        "TTFT p50, turns 2+, affinity off (ms)",
        "affinity.affinity_off.ttft_later_turns_p50_ms",
        "-",
    ),
    (
        "Affinity (2 llama.cpp nodes)",
        "TTFT p90, turns 2+, affinity on (ms)",
        "affinity.affinity_on.ttft_later_turns_p90_ms",
        "-",
    ),
    (
        "Affinity (2 llama.cpp nodes)",
        "TTFT p90, turns 2+, affinity off (ms)",
        "affinity.affinity_off.ttft_later_turns_p90_ms",
        "-",
    ),
    ("Affinity (2 llama.cpp nodes)", "cached prompt share, on / off", "affinity.cached_share_on_off", "-"),
]


def _missed(value: Any, target: str) -> bool | None:
    """Whether ``value`` misses a numeric target like ``≤ 3``, ``≥ 0.98``, ``0``; None when not comparable."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    text = target.split("(", maxsplit=1)[0].strip()
    try:
        if text.startswith("≤"):
            return value > float(text[1:].split()[0])
        if text.startswith("≥"):
            return value < float(text[1:].split()[0])
        return value != float(text)
    except ValueError:
        return None


def _scale_rows(results: dict[str, Any]) -> list[str]:
    keys = (
        "heartbeat_s",
        "cluster_cpu_pct",
        "node_cpu_pct",
        "converged_both_gateways_s",
        "gateway_heartbeats_per_s",
        "new_node_listed_s",
        "new_node_routable_s",
        "listed_to_routable_s",
    )
    rows = []
    for run in _get(results, "scale.real") or []:
        cells = [_fmt(run.get(key)) for key in keys]
        rows.append(f"| {run['nodes']} | {' | '.join(cells)} |")
    errors = [
        f"- {run['nodes']} nodes at {_fmt(run['heartbeat_s'])} s did not complete: {run['error']}"
        for run in _get(results, "scale.real") or []
        if "error" in run
    ]
    return rows + (["", *errors] if errors else [])


def render(results: dict[str, Any]) -> str:
    """The whole ``docs/benchmarks.md``."""
    m = results["machine"]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(results["started"]))
    lines = [
        "# Benchmarks",
        "",
        "Generated by `uv run nox -s bench` (`tests/bench/run.py`); every figure below comes from one run.",
        "Raw figures: [benchmarks.json](benchmarks.json). Benchmarks measure; they never fail on a target.",
        'Throughput, heartbeat flood and the 16-stream "each arm alone" figures load with wrk (a C client)',
        "when it is installed, so that the load generator does not take the CPU of the processes it measures.",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}; run {when}"
        + (" (**quick mode: small counts, figures not meaningful**)" if results.get("quick") else "")
        + ".",
        "",
        "| section | figure | measured | target |",
        "|---|---|---|---|",
    ]
    lines += [f"| {sec} | {label} | {_fmt(_get(results, path))} | {target} |" for sec, label, path, target in ROWS]
    if results.get("merged"):
        later = [
            f"{name} ({results[name].get('measured_at', '?')}, load average {results[name].get('load_avg_1m', '?')})"
            for name in results["merged"]
            if isinstance(results.get(name), dict)
        ]
        lines += ["", f"Sections measured in a later run on the same machine (`--merge`): {'; '.join(later)}."]
    missed = [
        f"- {sec}: {label}: {_fmt(_get(results, path))} (target {target})"
        for sec, label, path, target in ROWS
        if _missed(_get(results, path), target)
    ]
    lines += ["", "Targets missed in this run:" if missed else "Every numeric target was met in this run.", "", *missed]
    failed = [
        f"- **{name}** did not complete: {value['error']}"
        for name, value in results.items()
        if isinstance(value, dict) and "error" in value
    ]
    if failed:
        lines += ["", "Sections that failed in this run (their figures show as -):", "", *failed]
    history = Path(__file__).parents[2] / "docs" / "benchmark-history.md"
    if history.exists():  # hand-kept before/after figures of past changes, kept across regenerations
        lines += ["", history.read_text().strip()]
    lines += [
        "",
        "## Scale: real nodes on loopback, two gateways",
        "",
        "Times in seconds from spawning the node processes; CPU in percent of one core, measured over "
        "a window after convergence (all processes of the run: nodes, both gateways, the upstream). "
        "10 nodes run at a 1 s heartbeat interval and then each size at the default 5 s; the first size "
        "that fails ends the series.",
        "",
        "| nodes | heartbeat (s) | CPU, whole run (%) | CPU per node (%) | converged (both gateways) "
        "| heartbeats/s at a gateway | new node listed | new node routable | listed → routable |",
        "|---|---|---|---|---|---|---|---|---|",
        *_scale_rows(results),
        "",
        "## How each figure is measured",
        "",
        "- **Overhead**: the same chat requests go straight to the upstream and through gateway → libp2p → "
        "node → upstream, interleaved request by request in one run; *added* = gateway percentile minus "
        "direct percentile. The fast upstream is a raw-asyncio OpenAI-compatible server streaming 32 "
        "tokens 2 ms apart, so the difference is tooti's own cost; llama.cpp runs SmolLM2-135M with one "
        "thread and 4 slots. tokens/s = completion tokens / request time, median, gateway ÷ direct.",
        "- **Throughput**: non-streamed chats for 10 s per concurrency; the gateway process is pinned to "
        "CPU 0, node, upstream and load generator share CPU 1.",
        "- **Failover**: two nodes behind one gateway serve ~0.8 s streams to 8 concurrent clients; one "
        "node is SIGKILLed at 3 s. *Before first token* failures reach the client as errors; streams cut "
        "after it must end with an SSE error event.",
        "- **Scale**: `tooti node start` processes bootstrap from gateway 1; gateway 2 bootstraps from "
        "gateway 1 and learns everything through gossip. The simulated registry decodes and stores "
        "10,000 signed-heartbeat payloads (signature checking is libp2p's and not included) and routes "
        "over all of them through the gateway's own `decide()`.",
        "- **Fuzz**: schemathesis generates requests from the gateway's served OpenAPI schema (up to 100 "
        "per operation) against a real gateway with a real node; random, oversized, truncated and "
        "wrongly-shaped frames go to a node's `/tooti/infer/1.0.0`.",
        "- **Accounting**: the same non-streamed chats, one at a time and interleaved, through four "
        "in-process gateways (real uvicorn and HTTP, one in-process FakeBackend node, no libp2p): no "
        "store; SQLite with a key without budget (memory-only key check, usage row queued for the "
        "writer thread); SQLite and PostgreSQL with a token budget (one worker-thread call reserves "
        "before routing). *Added* = p50 minus the no-store p50.",
        "",
    ]
    return "\n".join(lines)
