"""``tooti receipts``: export a node's countersigned usage receipts, and verify an exported file.

An operator is paid from these: each line is a receipt the node signed with its libp2p key and the
gateway countersigned, checkable by anyone with nothing but the file (peer ids embed their keys).
"""

from __future__ import annotations

import sys
from pathlib import Path  # noqa: TC003 - typer reads the annotations at runtime
from typing import Annotated

import typer

from tooti.cli.store_option import ConfigFileOption, StoreOption, open_store
from tooti.cli.timespec import SinceOption, parse_since

app = typer.Typer(help="Export and verify signed usage receipts (what node operators are paid from).")


@app.command("export")
def export(
    node: Annotated[str, typer.Option("--node", help="The node's peer id.")],
    since: SinceOption = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
    file: ConfigFileOption = None,
    store: StoreOption = None,
) -> None:
    """Write the node's receipts, one countersigned receipt per line (JSON Lines)."""
    from tooti.cli._common import err_console

    since_ts = parse_since(since)
    db = open_store(file, store)
    try:
        lines = db.receipts(peer_id=node, since=since_ts)
    finally:
        db.close()
    text = "".join(line + "\n" for line in lines)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
    err_console.print(f"{len(lines)} receipt(s) of {node}", highlight=False)


@app.command("verify")
def verify(
    path: Annotated[Path, typer.Argument(help="A file written by `tooti receipts export`.")],
) -> None:
    """Check every receipt's node and gateway signatures; exit 1 if any line fails."""
    from tooti.accounting.receipts import ReceiptError, verify_line
    from tooti.cli._common import console, fail

    try:
        data = path.read_bytes()
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    bad = 0
    flagged = 0
    tokens = 0
    for number, line in enumerate(lines, 1):
        try:
            receipt = verify_line(line)
        except ReceiptError as exc:
            bad += 1
            console.print(f"[red]line {number}: rejected[/red]: {exc}", highlight=False)
            continue
        tokens += receipt.receipt.prompt_tokens + receipt.receipt.completion_tokens
        if receipt.flags:
            flagged += 1
            console.print(f"[yellow]line {number}: flagged[/yellow]: {', '.join(receipt.flags)}", highlight=False)
    good = len(lines) - bad
    console.print(
        f"{good} valid, {bad} rejected, {flagged} flagged; {tokens} tokens in valid receipts", highlight=False
    )
    if bad or not lines:
        raise typer.Exit(1)
