"""The installed entry points load: `tooti plugins list --json` shows the four strategies as ok."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path


def test_plugins_list_json_shows_the_four_strategies_ok(tmp_path):
    env = {**os.environ, "TOOTI_HOME": str(tmp_path)}
    env.pop("TOOTI_LOAD_PLUGINS", None)
    env.pop("TOOTI_DISABLE_PLUGINS", None)
    # The console script `uv run --no-sync tooti` runs, from this interpreter's environment.
    script = shutil.which("tooti", path=str(Path(sys.executable).parent))
    command = [script] if script else [sys.executable, "-m", "tooti"]
    out = subprocess.run(
        [*command, "plugins", "list", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    rows = {r["name"]: r for r in json.loads(out.stdout) if r["kind"] == "router" and not r["internal"]}
    expected = {
        "least-loaded": "LeastLoadedStrategy",
        "latency": "LatencyStrategy",
        "cost": "CostStrategy",
        "balanced": "BalancedStrategy",
    }
    for name, cls in expected.items():
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["distribution"] == "tooti-router-strategies"
        assert rows[name]["provides"] == [f"{name}={cls}"]
