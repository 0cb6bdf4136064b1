"""Closed-loop HTTP load with wrk: a load generator in C, so the client does not take the CPU it measures.

On a 2-core machine the Python load generator (``loadgen.py``) used a large share of a core at
hundreds of requests or thousands of streamed tokens a second, and that share came out of what the
gateway and node under test could use. wrk sends the same chat request over ``concurrency`` kept
connections from one thread and reports latency percentiles (whole response, streams included)
from its own histogram. It does not parse bodies: callers check completeness by response size
(``bytes_per_request``) against one response read by ``loadgen``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["WrkResult", "wrk_available", "wrk_run"]

_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("TOOTI_WRK_BODY")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\"requests\":%d,\"duration_us\":%d,\"bytes\":%d,\"connect\":%d,\"read\":%d,\"write\":%d," ..
    "\"status\":%d,\"timeout\":%d,\"p50_us\":%d,\"p99_us\":%d,\"mean_us\":%.1f}\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


@dataclass
class WrkResult:
    """One wrk run."""

    requests: int
    req_per_s: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    bytes_per_request: float
    errors: dict[str, int]
    """Non-zero error counts by kind: connect, read, write, status (non-2xx/3xx), timeout."""

    @property
    def failed(self) -> int:
        """Requests that failed (status errors and timeouts; socket errors counted once each)."""
        return sum(self.errors.values())


def wrk_available() -> bool:
    """Whether ``wrk`` is on PATH (``apt-get install wrk``)."""
    return shutil.which("wrk") is not None


async def wrk_run(
    url: str, body: dict[str, Any], *, concurrency: int, seconds: float, cpus: str | None = None
) -> WrkResult:
    """POST ``body`` to ``url`` from ``concurrency`` connections for ``seconds`` (whole seconds, at least 1)."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_SCRIPT)
    try:
        cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout", "30s"]
        cmd += ["-s", script.name, url]
        if cpus is not None:
            cmd = ["taskset", "-c", cpus, *cmd]
        env = {**os.environ, "TOOTI_WRK_BODY": json.dumps(body)}
        proc = await asyncio.create_subprocess_exec(
            *cmd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
        )
        out, _ = await proc.communicate()
    finally:
        Path(script.name).unlink()
    text = out.decode(errors="replace")
    line = next((ln for ln in text.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {text[-500:]}")
    raw = json.loads(line[len("WRKJSON ") :])
    requests = int(raw["requests"])
    errors = {k: int(raw[k]) for k in ("connect", "read", "write", "status", "timeout") if raw[k]}
    return WrkResult(
        requests=requests,
        req_per_s=requests / (raw["duration_us"] / 1e6),
        p50_ms=raw["p50_us"] / 1e3,
        p99_ms=raw["p99_us"] / 1e3,
        mean_ms=raw["mean_us"] / 1e3,
        bytes_per_request=raw["bytes"] / max(requests, 1),
        errors=errors,
    )
