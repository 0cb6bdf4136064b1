"""``tooti network``: what a running gateway sees of the network (its ``/v1/network/nodes`` and ``/v1/models``)."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer

app = typer.Typer(help="Inspect the network through a running gateway.", no_args_is_help=True)

_Gateway = Annotated[str, typer.Option("--gateway", "-g", help="Gateway base URL.", envvar="TOOTI_GATEWAY_URL")]
_Json = Annotated[bool, typer.Option("--json", help="Print the gateway's JSON instead of a table.")]


def _fetch(gateway: str, path: str) -> dict[str, Any]:
    import httpx

    from tooti.cli._common import fail

    headers = {}
    key = os.environ.get("TOOTI_API_KEY")
    if key:
        headers["authorization"] = f"Bearer {key}"
    url = gateway.rstrip("/") + path
    try:
        response = httpx.get(url, headers=headers, timeout=10.0)
    except httpx.HTTPError as exc:
        fail(f"cannot reach the gateway at {gateway}: {type(exc).__name__}: {exc}")
    if response.status_code != 200:
        fail(f"{url} answered {response.status_code}: {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data


def _standing(view: dict[str, Any]) -> str:
    """``trusted (0.93, weight 4)``, or ``quarantined (0.12): <why>`` — the gateway's verdict on the node.

    A reference node says so; when the last check's verdict is not what the standing says (a
    trusted node that just passed, a node on probation that was inconclusive), it is added.
    """
    state = view.get("standing")
    if state is None:
        return "-"
    if view.get("reference"):
        return f"trusted, reference ({_num(view.get('reputation'), '{:.2f}')})"
    detail = _num(view.get("reputation"), "{:.2f}")
    if state == "trusted":
        return f"trusted ({detail}, weight {_num(view.get('vote_weight'))})"
    text = f"{state} ({detail}): {view.get('standing_reason', '')}"
    last = (view.get("verdicts") or [{}])[0]
    if last and last.get("reason") and last.get("reason") != view.get("standing_reason"):
        text += f"; last check: {last.get('outcome')}, {last.get('reason')}"
    return text


def _num(value: Any, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


@app.command("peers")
def peers(gateway: _Gateway = "http://127.0.0.1:8080", as_json: _Json = False) -> None:
    """List the live nodes: peer id, models, load, TTFT, tokens/s, standing (and why), last seen."""
    from rich.table import Table

    from tooti.cli._common import console

    data = _fetch(gateway, "/v1/network/nodes")
    if as_json:
        typer.echo(_dump(data))
        return
    table = Table(title=f"nodes seen by {gateway}")
    for col in ("Peer", "Name", "Models", "Load", "TTFT ms", "Tok/s", "Standing", "Last seen"):
        table.add_column(col, overflow="fold")
    for n in data.get("data", []):
        load = f"{n.get('in_flight', 0)}+{n.get('queued', 0)}/{_num(n.get('capacity'))}"
        table.add_row(
            n["peer_id"],
            n.get("name", ""),
            ", ".join(n.get("models", [])),
            load,
            _num(n.get("ttft_ms")),
            _num(n.get("tokens_per_s"), "{:.1f}"),
            _standing(n.get("gateway") or {}),
            f"{n.get('age_s', 0):.1f} s ago",
        )
    console.print(table if data.get("data") else "No live nodes.")


@app.command("models")
def models(gateway: _Gateway = "http://127.0.0.1:8080", as_json: _Json = False) -> None:
    """List the models served by live nodes, with aliases and context length."""
    from rich.table import Table

    from tooti.cli._common import console

    data = _fetch(gateway, "/v1/models")
    if as_json:
        typer.echo(_dump(data))
        return
    table = Table(title=f"models on {gateway}")
    for col in ("Model", "Alias of", "Nodes", "Context", "Owned by"):
        table.add_column(col, overflow="fold")
    for m in data.get("data", []):
        alias_of = m.get("root") if m.get("root") != m["id"] else ""
        table.add_row(
            m["id"], alias_of or "", str(m.get("nodes", "")), _num(m.get("context_length")), m.get("owned_by", "")
        )
    console.print(table if data.get("data") else "No models: no live nodes.")


def _dump(data: dict[str, Any]) -> str:
    import json

    return json.dumps(data, indent=2)
