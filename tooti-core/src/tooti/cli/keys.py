"""``tooti keys``: create, list, show, revoke and rotate the gateway's API keys in its store.

A key is printed once, when it is created or rotated; the store keeps only its sha256 hash and a
short prefix to recognise it by. Running gateways pick up every change within
``gateway.store.key_refresh_sec`` without a restart.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tooti.cli.store_option import ConfigFileOption, StoreOption, open_store

if TYPE_CHECKING:
    from tooti.accounting.records import BudgetKind, KeyRecord

app = typer.Typer(help="Manage the gateway's API keys (budgets, limits, revocation).", no_args_is_help=True)

_Json = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
_KeyArg = Annotated[str, typer.Argument(help="The key's id (key_…), the key itself (tk_…), or its sha256: hash.")]


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts)) if ts is not None else "-"


def _status(record: KeyRecord) -> str:
    if record.revoked_at is not None:
        return "revoked"
    if not record.usable(time.time()):
        return "expired"
    if record.budget is not None and record.spent >= record.budget:
        return "spent"
    return "active"


def key_json(record: KeyRecord) -> dict[str, Any]:
    """The record as JSON for ``--json`` output (never the key, only its prefix)."""
    return {
        "id": record.id,
        "name": record.name,
        "prefix": record.prefix,
        "status": _status(record),
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "budget_kind": record.budget_kind,
        "budget": record.budget,
        "spent": record.spent,
        "reserved": record.reserved,
        "remaining": record.remaining(),
        "rpm": record.rpm,
        "tpm": record.tpm,
        "models": list(record.models),
        "last_used_at": record.last_used_at,
    }


def _amount(value: float | None, kind: str | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f} tok" if kind == "tokens" else f"{value:,.6g}"


def _print_key(record: KeyRecord) -> None:
    from rich.table import Table

    from tooti.cli._common import console

    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for label, value in (
        ("id", record.id),
        ("name", record.name or "-"),
        ("prefix", record.prefix + "…"),
        ("status", _status(record)),
        ("budget", _amount(record.budget, record.budget_kind)),
        ("spent", _amount(record.spent, record.budget_kind)),
        ("reserved", _amount(record.reserved, record.budget_kind)),
        ("remaining", _amount(record.remaining(), record.budget_kind)),
        ("rpm / tpm", f"{record.rpm or '-'} / {record.tpm or '-'}"),
        ("models", ", ".join(record.models) or "all"),
        ("created", _when(record.created_at)),
        ("expires", _when(record.expires_at)),
        ("last used", _when(record.last_used_at)),
    ):
        table.add_row(label, value)
    console.print(table)


@app.command("create")
def create(
    name: Annotated[str | None, typer.Option(help="A label for the key.")] = None,
    budget: Annotated[
        float | None, typer.Option(min=0, help="Money budget, in the unit nodes price in (per 1K tokens).")
    ] = None,
    budget_tokens: Annotated[int | None, typer.Option(min=0, help="Token budget (prompt + completion).")] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute, on all gateways.")] = None,
    tpm: Annotated[int | None, typer.Option(min=1, help="Tokens per minute, on all gateways.")] = None,
    models: Annotated[str | None, typer.Option(help="Comma-separated models the key may use (default: all).")] = None,
    expires: Annotated[str | None, typer.Option(help="Expiry: a span (30d, 12h) or a date (2026-12-31).")] = None,
    as_json: _Json = False,
    file: ConfigFileOption = None,
    store: StoreOption = None,
) -> None:
    """Create a key and print it once (only its hash is stored)."""
    from tooti.cli._common import console, err_console, fail
    from tooti.cli.timespec import parse_time

    if budget is not None and budget_tokens is not None:
        fail("give --budget (money) or --budget-tokens, not both")
    try:
        expires_at = parse_time(expires, future=True) if expires else None
    except ValueError as exc:
        fail(f"--expires: {exc}")
    kind: BudgetKind | None = "money" if budget is not None else "tokens" if budget_tokens is not None else None
    amount = budget if budget is not None else float(budget_tokens) if budget_tokens is not None else None
    allowed = [m.strip() for m in (models or "").split(",") if m.strip()]
    db = open_store(file, store)
    try:
        key, record = db.create_key(
            name=name, budget=amount, budget_kind=kind, rpm=rpm, tpm=tpm, models=allowed, expires_at=expires_at
        )
    finally:
        db.close()
    if as_json:
        typer.echo(json.dumps({"key": key, **key_json(record)}))
        return
    err_console.print("New API key — shown once, only its hash is stored:", highlight=False)
    typer.echo(key)
    console.print(f"id {record.id}", highlight=False)


@app.command("list")
def list_keys(as_json: _Json = False, file: ConfigFileOption = None, store: StoreOption = None) -> None:
    """List every key with its budget, spend and limits (never the keys themselves)."""
    from rich.table import Table

    from tooti.cli._common import console

    db = open_store(file, store)
    try:
        records = db.list_keys()
    finally:
        db.close()
    if as_json:
        typer.echo(json.dumps([key_json(r) for r in records]))
        return
    table = Table(title=f"{len(records)} key(s)")
    for col in ("id", "name", "prefix", "status", "budget", "spent", "remaining", "rpm", "tpm", "models", "last used"):
        table.add_column(col, no_wrap=col in ("id", "status"))
    for r in records:
        table.add_row(
            r.id,
            r.name or "-",
            r.prefix + "…",
            _status(r),
            _amount(r.budget, r.budget_kind),
            _amount(r.spent, r.budget_kind),
            _amount(r.remaining(), r.budget_kind),
            str(r.rpm or "-"),
            str(r.tpm or "-"),
            ",".join(r.models) or "all",
            _when(r.last_used_at),
        )
    console.print(table)


def _find(db: Any, key_or_id: str) -> KeyRecord:
    from tooti.accounting.store import KeyNotFound
    from tooti.cli._common import fail

    try:
        record: KeyRecord = db.find_key(key_or_id)
    except KeyNotFound as exc:
        fail(f"no key {exc}")
    return record


@app.command("show")
def show(key_or_id: _KeyArg, as_json: _Json = False, file: ConfigFileOption = None, store: StoreOption = None) -> None:
    """Show one key: spend, remaining budget, limits, last use."""
    db = open_store(file, store)
    try:
        record = _find(db, key_or_id)
    finally:
        db.close()
    if as_json:
        typer.echo(json.dumps(key_json(record)))
        return
    _print_key(record)


@app.command("revoke")
def revoke(
    key_or_id: _KeyArg, as_json: _Json = False, file: ConfigFileOption = None, store: StoreOption = None
) -> None:
    """Revoke a key; gateways sharing the store refuse it within gateway.store.key_refresh_sec."""
    from tooti.cli._common import console

    db = open_store(file, store)
    try:
        record = db.revoke_key(_find(db, key_or_id).id)
    finally:
        db.close()
    if as_json:
        typer.echo(json.dumps(key_json(record)))
        return
    console.print(f"revoked {record.id}", highlight=False)


@app.command("rotate")
def rotate(
    key_or_id: _KeyArg, as_json: _Json = False, file: ConfigFileOption = None, store: StoreOption = None
) -> None:
    """Give a key a new secret (same id, budget and spend); the old secret stops working."""
    from tooti.cli._common import console, err_console, fail

    db = open_store(file, store)
    try:
        try:
            key, record = db.rotate_key(_find(db, key_or_id).id)
        except ValueError as exc:
            fail(str(exc))
    finally:
        db.close()
    if as_json:
        typer.echo(json.dumps({"key": key, **key_json(record)}))
        return
    err_console.print("New secret for the key — shown once; the old one no longer works:", highlight=False)
    typer.echo(key)
    console.print(f"id {record.id}", highlight=False)
