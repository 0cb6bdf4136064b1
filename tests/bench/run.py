"""tooti benchmarks: overhead, throughput, failover, heartbeat flood, scale and fuzz, measured in one run.

Writes ``docs/benchmarks.json`` (every figure) and ``docs/benchmarks.md`` (the table, each figure
beside its target, and the machine it came from). Run through ``uv run nox -s bench``, or directly:
``python tests/bench/run.py [--quick] [--only overhead,failover]``.

These are measurements, not tests: nothing here fails because a number misses its target.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import report
import scenarios

DOCS = Path(__file__).parents[2] / "docs"
SECTIONS = ("overhead", "throughput", "failover", "flood", "scale", "fuzz", "accounting", "affinity")


def main() -> None:
    """Run the selected sections and write the report."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: checks the harness, not the numbers")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=DOCS, help="where benchmarks.md/.json go")
    parser.add_argument(
        "--merge", action="store_true", help="keep the other sections' figures from the existing benchmarks.json"
    )
    args = parser.parse_args()
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    results: dict[str, Any] = {"machine": report.machine(), "quick": args.quick, "started": time.time()}
    earlier = args.out / "benchmarks.json"
    if args.merge and earlier.exists():
        kept = json.loads(earlier.read_text())
        results = {**kept, "merged": sorted({*kept.get("merged", []), *chosen})}
    with tempfile.TemporaryDirectory(prefix="tooti-bench-") as tmp:
        for section in chosen:
            t0 = time.monotonic()
            print(f"== {section}", flush=True)  # noqa: T201 - progress of a long command-line run
            runner = getattr(scenarios, section)
            try:
                results[section] = asyncio.run(runner(Path(tmp) / section, quick=args.quick))
            except Exception as exc:  # noqa: BLE001 - one broken section must not lose the others' figures
                results[section] = {"error": f"{type(exc).__name__}: {exc}"}
            results[section]["wall_s"] = round(time.monotonic() - t0, 1)
            results[section]["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            results[section]["load_avg_1m"] = round(os.getloadavg()[0], 2)
            print(json.dumps(results[section], indent=1)[:2000], flush=True)  # noqa: T201
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "benchmarks.md").write_text(report.render(results))
    print(f"wrote {args.out / 'benchmarks.md'}", flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
