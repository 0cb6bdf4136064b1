"""The workspace's first-party plugins are discoverable through the real CLI and entry points."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import version

EXPECTED = {
    "ollama": ("backend", "tooti-backend-ollama"),
    "vllm": ("backend", "tooti-backend-vllm"),
    "llamacpp": ("backend", "tooti-backend-llamacpp"),
    "least-loaded": ("router", "tooti-router-strategies"),
    "latency": ("router", "tooti-router-strategies"),
    "cost": ("router", "tooti-router-strategies"),
    "balanced": ("router", "tooti-router-strategies"),
}


def _plugins_json(*extra: str) -> list[dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "tooti", "plugins", "list", "--json", *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout)


def test_plugins_list_shows_every_first_party_plugin_ok():
    rows = {r["name"]: r for r in _plugins_json()}
    for name, (kind, dist) in EXPECTED.items():
        row = rows[name]
        assert (row["kind"], row["distribution"], row["status"]) == (kind, dist, "ok"), row
        assert row["version"] == version(dist)
        assert row["provides"]
        assert row["hooks"] == [f"tooti_register_{kind}s"]


def test_all_flag_adds_the_builtin_router():
    names = {r["name"] for r in _plugins_json("--all")}
    assert "simple" in names
    assert "simple" not in {r["name"] for r in _plugins_json()}
