"""Does an open explorer page slow user requests? The overhead scenario with and without the page's polling.

Same setup as the ``overhead`` section (``scenarios.py``): a fast upstream streaming 32 tokens 2 ms
apart, a ``tooti gateway`` process and a ``tooti node`` process in front of it; requests go direct
and through tooti interleaved, and the figure is what tooti adds (gateway minus direct). Rounds
alternate three modes so machine noise spreads over all of them:

- ``no_page``: nobody polls ``/explorer/summary``;
- ``page_1s``: one page polling every second (the page's default is 3 s; 1 s is its fastest);
- ``pages_20_per_s``: 20 polls a second, e.g. twenty such pages open at once.

Run: ``python tests/bench/explorer_overhead.py [--rounds 3] [--requests 100]``; it prints JSON. A
measurement, not a test: nothing fails on a number.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from cluster import Cluster
from loadgen import run_load
from scenarios import FAST_MODEL, _compare, _paths, _warm

MODES = {"no_page": 0.0, "page_1s": 1.0, "pages_20_per_s": 0.05}


async def _poll(base_url: str, every_s: float, stop: asyncio.Event, counter: list[int]) -> None:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        while not stop.is_set():
            r = await client.get("/explorer/summary")
            r.raise_for_status()
            counter[0] += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), every_s)


async def measure(workdir: Path, rounds: int, requests: int) -> dict[str, Any]:
    """Per mode: the added p50/p99 of every round and their medians."""
    cluster = Cluster(workdir)
    per_mode: dict[str, list[dict[str, Any]]] = {m: [] for m in MODES}
    polls = dict.fromkeys(MODES, 0)
    try:
        fast = cluster.upstream(chunks=32, chunk_delay=0.002)
        gateway, _node, urls = await _paths(cluster, "vllm", fast)
        await _warm(urls, FAST_MODEL)
        for _ in range(rounds):
            for mode, every in MODES.items():
                stop, counter = asyncio.Event(), [0]
                poller = asyncio.create_task(_poll(gateway.base_url, every, stop, counter)) if every else None
                got = await run_load(urls, FAST_MODEL, requests=requests, concurrency=1, stream=True)
                stop.set()
                if poller is not None:
                    await poller
                polls[mode] += counter[0]
                per_mode[mode].append(_compare(got[urls[0]], got[urls[1]]))
    finally:
        cluster.close()
    out: dict[str, Any] = {"rounds": rounds, "requests_per_round": requests, "measured_at": time.time()}
    for mode, runs in per_mode.items():
        out[mode] = {
            "added_p50_ms": [r["added_p50_ms"] for r in runs],
            "added_p99_ms": [r["added_p99_ms"] for r in runs],
            "median_added_p50_ms": round(statistics.median(r["added_p50_ms"] for r in runs), 3),
            "median_added_p99_ms": round(statistics.median(r["added_p99_ms"] for r in runs), 3),
            "failed_gateway": sum(r["failed_gateway"] for r in runs),
            "summary_polls": polls[mode],
        }
    return out


def main() -> None:
    """Parse arguments, measure, print JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100, help="requests per path per round (c=1 streams)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tooti-bench-explorer-") as tmp:
        result = asyncio.run(measure(Path(tmp), args.rounds, args.requests))
    print(json.dumps(result, indent=2))  # noqa: T201 - the figures are the output


if __name__ == "__main__":
    main()
