"""The root typer application and its small commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tooti.cli import authority_cmd, network_cmd, receipts_cmd, usage_cmd
from tooti.cli import gateway as gateway_cmd
from tooti.cli import keys as keys_cmd
from tooti.cli import node as node_cmd
from tooti.cli import plugins as plugins_cmd
from tooti.cli import up as up_cmd

app = typer.Typer(
    name="tooti",
    help="tooti: a decentralized AI inference network with an OpenAI-compatible gateway.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(plugins_cmd.app, name="plugins")
app.add_typer(gateway_cmd.app, name="gateway")
app.add_typer(network_cmd.app, name="network")
app.add_typer(node_cmd.app, name="node")
app.add_typer(authority_cmd.app, name="authority")
app.command("up")(up_cmd.up)
app.add_typer(keys_cmd.app, name="keys")
app.command("usage")(usage_cmd.usage)
app.add_typer(receipts_cmd.app, name="receipts")

ConfigFile = Annotated[Path | None, typer.Option("--file", "-f", help="Config file (.yaml/.yml/.toml).")]


@app.command()
def version() -> None:
    """Print tooti's version."""
    from tooti import __version__

    typer.echo(f"tooti {__version__}")


@app.command("config-check")
def config_check(file: ConfigFile = None) -> None:
    """Validate a config file, including the configured backend plugin's own section."""
    from tooti.cli._common import console, fail
    from tooti.config import backend_plugin_config, default_config_file, load_config
    from tooti.errors import ConfigError, PluginError
    from tooti.plugins import PluginHost

    path = file or default_config_file()
    try:
        config = load_config(path)
        backend_plugin_config(config, PluginHost(), source=str(path))
    except ConfigError as exc:
        fail(str(exc))
    except PluginError as exc:
        fail(f"{path}: backend.type: {exc}")
    console.print(f"[green]ok[/green] {path}: backend {config.backend.type!r}, gateway {config.gateway.listen}")


def main() -> None:
    """Console-script entry point."""
    app()
