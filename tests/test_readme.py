"""The README's commands and snippets stay true: they are what `tooti up` prints and what CI runs."""

from __future__ import annotations

import re
import subprocess
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
    runs = [line for line in ci if line.split(" || ")[0] == "uv run nox"]
    assert runs == ["uv run nox || suite_status=$?"], "CI must run exactly the README's test command, once"
    assert ci[-1] == 'exit "$suite_status"', "and end with its exit status"


def test_ci_prints_the_suite_duration_and_keeps_its_exit_status(tmp_path):
    """The end of .ci/run (from the README's command on), with a stand-in `uv` that takes 1 s and fails."""
    script = (ROOT / ".ci" / "run").read_text()
    tail = script[script.index("# The README's test command") :]
    (tmp_path / "uv").write_text("#!/bin/sh\nsleep 1\nexit 3\n")
    (tmp_path / "uv").chmod(0o755)
    run = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + tail],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert run.returncode == 3, run.stderr
    printed = r"ci: test suite \(uv run nox\) took 0m0[12]s \([12] s\), exit status 3\n"
    assert re.fullmatch(printed, run.stdout), run.stdout
