"""``tooti usage``: what was served, by whom and for which key — totals per model and day, and recent rows."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from tooti.cli.store_option import ConfigFileOption, StoreOption, open_store
from tooti.cli.timespec import SinceOption, parse_since


def usage(
    key: Annotated[str | None, typer.Option("--key", help="Only this key (id, key or hash).")] = None,
    node: Annotated[str | None, typer.Option("--node", help="Only requests served by this node peer id.")] = None,
    since: SinceOption = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="Recent rows to show.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    file: ConfigFileOption = None,
    store: StoreOption = None,
) -> None:
    """Show usage recorded by gateways sharing the store."""
    import msgspec
    from rich.table import Table

    from tooti.accounting.store import KeyNotFound
    from tooti.cli._common import console

    since_ts = parse_since(since)
    db = open_store(file, store)
    try:
        key_id = None
        if key is not None:
            try:
                key_id = db.find_key(key).id
            except KeyNotFound:
                key_id = key  # rows of config keys carry a "config:…" id that is not in the key table
        summary = db.usage_summary(key_id=key_id, peer_id=node, since=since_ts)
        rows = db.usage_rows(key_id=key_id, peer_id=node, since=since_ts, limit=limit)
    finally:
        db.close()
    if as_json:
        payload = {"summary": summary, "rows": [msgspec.structs.asdict(r) for r in rows]}
        typer.echo(json.dumps(payload))
        return
    totals = Table(title="usage by day and model")
    for col in ("day", "model", "requests", "failed", "tokens in", "tokens out", "cost"):
        totals.add_column(col, justify="right" if col not in ("day", "model") else "left")
    for s in summary:
        totals.add_row(
            s["day"],
            s["model"],
            str(s["requests"]),
            str(s["failed"]),
            f"{s['prompt_tokens']:,}",
            f"{s['completion_tokens']:,}",
            f"{s['cost']:.6g}",
        )
    console.print(totals)
    recent = Table(title=f"last {len(rows)} request(s)")
    for col in ("time", "key", "model", "node", "in", "out", "cost", "ttft ms", "ms", "status", "failovers", "receipt"):
        recent.add_column(col)
    for r in rows:
        recent.add_row(
            time.strftime("%m-%d %H:%M:%S", time.gmtime(r.at)),
            r.key_id or "-",
            r.model,
            (r.peer_id or "-")[-12:],
            str(r.prompt_tokens),
            str(r.completion_tokens),
            f"{r.cost:.6g}",
            f"{r.ttft_ms:.0f}" if r.ttft_ms is not None else "-",
            f"{r.duration_ms:.0f}",
            r.status,
            str(r.failovers),
            "mismatch" if r.receipt_mismatch else "signed" if r.receipt else "-",
        )
    console.print(recent)
