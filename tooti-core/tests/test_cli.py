from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from tooti import __version__
from tooti.cli import app

runner = CliRunner()
EXAMPLE = Path(__file__).parents[2] / "docs" / "node.example.yaml"


def _tooti(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tooti", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_version():
    result = runner.invoke(app, ["version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"tooti {__version__}"


def test_help_imports_no_plugin_or_network_code():
    code = (
        "import sys\n"
        "from tooti.cli import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in "
        "('libp2p', 'litestar', 'uvicorn', 'trio', 'httpx') or m.startswith('tooti_')]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert "HEAVY []" in out


def test_plugins_list_json_records(fake_distribution):
    fake_distribution("tooti-backend-broken", {"tooti.backends": {"broken": "module_that_does_not_exist"}})
    result = runner.invoke(app, ["plugins", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    (broken,) = [r for r in rows if r["name"] == "broken"]
    assert {k: broken[k] for k in ("kind", "distribution", "version")} == {
        "kind": "backend",
        "distribution": "tooti-backend-broken",
        "version": "9.9.9",
    }
    assert broken["status"].startswith("failed: ModuleNotFoundError")
    assert all(set(r) >= {"name", "kind", "distribution", "version", "status"} for r in rows)


def test_broken_third_party_plugin_does_not_break_the_cli(fake_distribution, tmp_path):
    site = fake_distribution(
        "tooti-backend-exploding",
        {"tooti.backends": {"exploding": "exploding_plugin"}, "tooti.routers": {"bad-router": "nope_module"}},
        {"exploding_plugin": "raise RuntimeError('boom at import')\n"},
    )
    env = {"PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    listed = _tooti("plugins", "list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r["status"] for r in json.loads(listed.stdout)}
    assert rows["exploding"] == "failed: RuntimeError: boom at import"
    assert rows["bad-router"].startswith("failed: ModuleNotFoundError")
    table = _tooti("plugins", "list", env=env)
    assert table.returncode == 0
    assert "exploding" in table.stdout
    assert _tooti("version", env=env).returncode == 0
    config = tmp_path / "node.yaml"
    config.write_text("backend: {type: exploding}\n")
    checked = _tooti("config-check", "-f", str(config), env=env)
    assert checked.returncode == 1
    assert "exploding" in checked.stderr
    assert "boom at import" in checked.stderr


def test_config_check_names_misspelled_key(tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text("node:\n  name: a\nheartbeat:\n  intervl_sec: 3\n")
    result = _tooti("config-check", "--file", str(config))
    assert result.returncode == 1
    assert "heartbeat.intervl_sec: unknown key" in result.stderr


def test_config_check_reports_unknown_backend(tmp_path):
    config = tmp_path / "node.yaml"
    config.write_text("backend: {type: nosuchbackend}\n")
    result = runner.invoke(app, ["config-check", "-f", str(config)])
    assert result.exit_code == 1
    assert "no backend plugin named 'nosuchbackend'" in result.output


def test_config_check_validates_plugin_section(tmp_path, fake_distribution):
    fake_distribution(
        "tooti-backend-cfg",
        {"tooti.backends": {"cfg": "cfg_plugin"}},
        {
            "cfg_plugin": """
            import msgspec
            from tooti import hookimpl

            class CfgConfig(msgspec.Struct, forbid_unknown_fields=True):
                threads: int = 1

            class CfgBackend:
                name = "cfg"
                config_type = CfgConfig

            @hookimpl
            def tooti_register_backends():
                return [CfgBackend]
            """
        },
    )
    good = tmp_path / "good.yaml"
    good.write_text("backend: {type: cfg}\nbackends: {cfg: {threads: 2}}\n")
    ok = runner.invoke(app, ["config-check", "-f", str(good)])
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[backend]\ntype = "cfg"\n[backends.cfg]\nthreads = "two"\n')
    result = runner.invoke(app, ["config-check", "-f", str(bad)])
    assert result.exit_code == 1
    assert "backends.cfg.threads: Expected `int`, got `str`" in result.output


def test_config_check_default_location(tooti_home):
    tooti_home.mkdir()
    (tooti_home / "node.yaml").write_text("node: {name: home}\nbackend: {type: nosuch}\n")
    result = runner.invoke(app, ["config-check"])
    assert str(tooti_home / "node.yaml") in result.output


def _up_without(*hidden: str) -> subprocess.CompletedProcess[str]:
    """``tooti up`` in an interpreter where ``hidden`` modules cannot be found (as if not installed)."""
    code = (
        "import sys\n"
        f"for name in {hidden!r}:\n    sys.modules[name] = None\n"
        "from tooti.cli import app\n"
        "app(['up', '--port', '0'])\n"
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_up_without_the_llamacpp_plugin_names_the_pip_install():
    result = _up_without("tooti_backend_llamacpp")
    assert result.returncode == 1
    assert "pip install tooti-backend-llamacpp" in result.stderr
    assert "Traceback" not in result.stderr
