"""``tooti plugins``: what is installed and whether it loads."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Inspect installed plugins.", no_args_is_help=True)


@app.command("list")
def list_plugins(
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON array of records.")] = False,
    show_all: Annotated[bool, typer.Option("--all", help="Include tooti's built-in plugins.")] = False,
    kind: Annotated[str | None, typer.Option(help="Only 'backend' or 'router'.")] = None,
) -> None:
    """List installed backend and router plugins, loading each one in isolation."""
    import msgspec

    from tooti.cli._common import console, fail
    from tooti.errors import PluginError
    from tooti.plugins import PluginHost

    if kind not in (None, "backend", "router"):
        fail(f"--kind must be 'backend' or 'router', got {kind!r}")
    try:
        host = PluginHost()
        host.load_all()
    except PluginError as exc:  # only in strict mode
        fail(str(exc))
    rows = [r for r in host.inventory(include_internal=show_all) if kind is None or r.kind == kind]
    if as_json:
        typer.echo(msgspec.json.encode(rows).decode())
        return
    from rich.table import Table

    table = Table(title="tooti plugins")
    for column in ("Name", "Kind", "Distribution", "Version", "Provides", "Hooks", "Status"):
        table.add_column(column, overflow="fold")
    for r in rows:
        status = "[green]ok[/green]" if r.status == "ok" else f"[yellow]{r.status}[/yellow]"
        table.add_row(
            r.name, r.kind, r.distribution or "-", r.version or "-", ", ".join(r.provides), ", ".join(r.hooks), status
        )
    if not rows:
        console.print("No plugins installed. Try: pip install tooti-backend-llamacpp tooti-router-strategies")
        return
    console.print(table)
