"""The README's commands and snippets stay true: they are what `tooti up` prints and what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

from tooti.gateway.launcher import snippets

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return [b.rstrip("\n") for b in re.findall(rf"```{language}\n(.*?)```", README, flags=re.DOTALL)]


def test_quick_start_snippets_are_what_tooti_up_prints():
    curl, python = snippets("http://127.0.0.1:8080")
    assert curl in _blocks("bash")
    assert python in _blocks("python")


def test_readme_run_and_test_commands():
    commands = _blocks("bash")
    assert "uv run tooti up" in commands
    assert "uv run nox" in commands
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] == "uv run nox", "CI must run exactly the README's test command"
