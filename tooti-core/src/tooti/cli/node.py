"""``tooti node``: run a node agent, print its peer id, show its status."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tooti.config.model import Config
    from tooti.errors import TootiError
    from tooti.node.agent import NodeStarted

app = typer.Typer(help="Run and inspect a tooti node agent.", no_args_is_help=True)

ConfigFile = Annotated[Path | None, typer.Option("--file", "-f", help="Config file (.yaml/.yml/.toml).")]


def _config(file: Path | None) -> tuple[Config, Path]:
    from tooti.cli._common import fail
    from tooti.config import default_config_file, load_config
    from tooti.errors import TootiError

    path = file or default_config_file()
    try:
        return load_config(path), path
    except TootiError as exc:
        fail(str(exc))


def _identity_path(config: Config | None) -> Path:
    from pathlib import Path

    from tooti.config import default_identity_file

    configured = config.node.identity_key_file if config is not None else None
    return Path(configured or default_identity_file()).expanduser()


@app.command("id")
def node_id(
    file: ConfigFile = None,
    key_file: Annotated[Path | None, typer.Option("--key-file", help="Identity key file to read.")] = None,
) -> None:
    """Print the node's peer id (creating its identity key if it does not exist yet)."""
    from tooti.cli._common import fail
    from tooti.errors import TootiError
    from tooti.p2p.identity import load_or_create_identity, peer_id_of

    if key_file is not None:
        path = key_file.expanduser()
    else:
        config = _config(file)[0] if file is not None else None
        path = _identity_path(config)
    try:
        typer.echo(peer_id_of(load_or_create_identity(path)))
    except (TootiError, OSError) as exc:
        fail(f"cannot read identity {path}: {exc}")


def _started(config: Config, started: NodeStarted) -> None:
    from tooti.serving_gc import tune_gc_for_serving

    _announce(config, started)
    tune_gc_for_serving()


def _announce(config: Config, started: NodeStarted) -> None:
    from tooti.cli._common import console

    console.print(f"[bold green]tooti node[/bold green] {config.node.name!r} serving", highlight=False)
    console.print(f"peer id: {started.peer_id}", highlight=False, soft_wrap=True)
    for addr in started.addrs:
        console.print(f"listen: {addr}", highlight=False, soft_wrap=True)
    names = ", ".join(m.name for m in started.models) or "(none)"
    console.print(f"models: {names}", highlight=False, soft_wrap=True)
    from tooti.node.gateway_admission import open_to_anyone

    if open_to_anyone(config.node):
        console.print(
            "[bold yellow]warning:[/bold yellow] node.admission.mode is open and no gateway is allow-listed: "
            "this node serves ANYONE who dials it, bypassing every gateway's API keys and limits. "
            "Set node.admission (allowlist or membership) unless that is what you want (docs/security.md).",
            highlight=False,
            soft_wrap=True,
        )


@app.command("start")
def start(file: ConfigFile = None) -> None:
    """Serve the configured backend on the network until SIGINT/SIGTERM."""
    import logging

    import trio

    from tooti.cli._common import fail
    from tooti.errors import TootiError
    from tooti.node.launch import build_backend, serve_until_signal

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per backend poll otherwise
    config, path = _config(file)
    try:
        backend = build_backend(config, source=str(path))
        trio.run(serve_until_signal, config, backend, lambda started: _started(config, started))
    except TootiError as exc:
        fail(str(exc))
    except BaseExceptionGroup as group:  # trio nurseries wrap errors raised by their tasks
        found = _tooti_error(group)
        if found is None:
            raise
        fail(str(found))


def _tooti_error(exc: BaseException) -> TootiError | None:
    """The first :class:`TootiError` inside (nested) exception groups, if any."""
    from tooti.errors import TootiError

    if isinstance(exc, TootiError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _tooti_error(inner)
            if found is not None:
                return found
    return None


@app.command("status")
def status(file: ConfigFile = None) -> None:
    """Show the backend's health, its models, the node's peer id and hardware (no network start)."""
    import trio

    from tooti.cli._common import fail
    from tooti.errors import TootiError

    config, path = _config(file)
    try:
        trio.run(_status, config, path)
    except TootiError as exc:
        fail(str(exc))


async def _status(config: Config, path: Path) -> None:
    from rich.table import Table

    from tooti.cli._common import console
    from tooti.node.announce import advertised_models
    from tooti.node.hardware import detect_hardware
    from tooti.node.launch import build_backend
    from tooti.p2p.identity import peer_id_of, read_identity

    backend = build_backend(config, source=str(path))
    identity = _identity_path(config)
    peer = peer_id_of(read_identity(identity)) if identity.exists() else "(no identity yet: run `tooti node id`)"
    try:
        await backend.start()
        health = await backend.health()
        served = await backend.list_models() if health.ok else []
        models = advertised_models(served, config.models, backend.name)
    finally:
        await backend.aclose()
    table = Table(title=f"tooti node {config.node.name!r}", show_header=False)
    table.add_row("peer id", peer)
    table.add_row("identity", str(identity))
    table.add_row("backend", f"{backend.name} — {'[green]healthy[/green]' if health.ok else '[red]unhealthy[/red]'}")
    if health.detail:
        table.add_row("health", health.detail)
    table.add_row("models", ", ".join(m.name for m in models) or "(none)")
    table.add_row("listen", f"{config.listen.host}:{config.listen.tcp_port}")
    table.add_row("running node", await _running_readiness(config))
    table.add_row("hardware", detect_hardware().summary())
    console.print(table)


async def _running_readiness(config: Config) -> str:
    """What the running node's ``/ready`` says (needs ``metrics.enabled``): its own view of its server.

    The backend probe above is this command's own; the running node may see it differently (it
    stops announcing models while its server fails), and that is what the network acts on.
    """
    import httpx

    if not config.metrics.enabled:
        return "unknown (enable metrics to expose /ready)"
    host, _, port = config.metrics.listen.rpartition(":")
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/ready"  # noqa: S104 - any address
    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            response = await client.get(url)
        body = response.json()
    except (httpx.HTTPError, ValueError):
        return "not running (no answer on the metrics address)"
    if response.status_code == 200:
        return f"[green]ready[/green] — {body.get('models', 0)} model(s) announced"
    return f"[red]not ready[/red] — {body.get('detail', 'unknown')}"
