"""``tooti gateway``: run the OpenAI-compatible gateway, and make API key hashes for its config."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Run the OpenAI-compatible gateway.", no_args_is_help=True)

_ConfigFile = Annotated[Path | None, typer.Option("--file", "-f", help="Config file (.yaml/.yml/.toml).")]


@app.command("start")
def start(
    file: _ConfigFile = None,
    listen: Annotated[str | None, typer.Option(help="HOST:PORT to serve HTTP on (default: gateway.listen).")] = None,
    identity: Annotated[
        Path | None,
        typer.Option(help="The gateway's own key file (created if missing). Default: $TOOTI_HOME/gateway.key."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level: debug, info, warning, error.")] = "info",
) -> None:
    """Join the network and serve /v1/chat/completions and friends until Ctrl-C."""
    import logging

    import uvicorn

    from tooti.cli._common import console, fail
    from tooti.config import default_config_file, load_config, tooti_home
    from tooti.errors import TootiError
    from tooti.gateway import create_app
    from tooti.gateway.p2p import p2p_network
    from tooti.gateway.server import parse_listen, uvicorn_config
    from tooti.plugins import PluginHost
    from tooti.serving_gc import serving_gc_lifespan

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    path = file or default_config_file()
    try:
        config = load_config(path)
        host, port = parse_listen(listen or config.gateway.listen)
        store = None
        if config.gateway.store.enabled:
            from tooti.accounting.store import AccountingStore

            store = AccountingStore.open(config.gateway.store.url)
        identity_file = identity or tooti_home() / "gateway.key"
        network, lifespan = p2p_network(config, identity_file=identity_file)
        signing_key = None
        if store is not None:
            from tooti.p2p.identity import load_or_create_identity

            signing_key = load_or_create_identity(identity_file)
        gateway_app = create_app(
            config,
            network,
            PluginHost(),
            lifespan=[lifespan, serving_gc_lifespan],
            store=store,
            signing_key=signing_key,
        )
    except (TootiError, ValueError) as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - the store's driver errors: name the database, not the password
        from tooti.accounting.engine import redact_url

        fail(f"gateway.store.url: cannot open {redact_url(config.gateway.store.url or 'the SQLite store')}: {exc}")
    if config.gateway.auth_mode == "off" and host not in ("127.0.0.1", "localhost", "::1"):
        console.print(f"[yellow]warning:[/yellow] {host}:{port} is reachable beyond this machine with auth_mode off")
    console.print(f"tooti gateway on [bold]http://{host}:{port}/v1[/bold] (Ctrl-C to stop)")
    if store is not None:
        console.print(f"accounting store: {store.url}", highlight=False)
    try:
        uvicorn.Server(uvicorn_config(gateway_app, host, port, log_level=log_level.lower())).run()
    finally:
        if store is not None:
            store.close()


@app.command("hash-key")
def hash_key_command(
    generate: Annotated[bool, typer.Option("--generate", help="Make a new random key instead of reading one.")] = False,
) -> None:
    """Print the sha256 hash of an API key read from stdin (or of a new key) for gateway.api_key_hashes."""
    from tooti.cli._common import err_console, fail
    from tooti.gateway.api_keys import generate_key, hash_key

    if generate or sys.stdin.isatty():
        key = generate_key()
        err_console.print("New API key (give it to the client; it is not stored anywhere):", highlight=False)
        typer.echo(f"key:  {key}")
        typer.echo(f"hash: {hash_key(key)}")
        return
    key = sys.stdin.readline().strip()
    if not key:
        fail("no key on stdin; pipe one in, or use --generate")
    typer.echo(hash_key(key))
