"""Opening the gateway's accounting store from the CLI: ``--store URL``, else the config's, else SQLite."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from tooti.accounting.store import AccountingStore

__all__ = ["ConfigFileOption", "StoreOption", "open_store"]

ConfigFileOption = Annotated[
    Path | None,
    typer.Option("--file", "-f", help="Config file whose gateway.store.url to use (default: the usual config)."),
]
StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL (sqlite:///PATH or postgresql://…); overrides the config."),
]


def open_store(file: Path | None, store: str | None) -> AccountingStore:
    """The store a gateway with this config would use, migrated to the current schema; exits on errors."""
    from tooti.accounting.store import AccountingStore
    from tooti.cli._common import fail
    from tooti.config import default_config_file, load_config
    from tooti.errors import ConfigError

    url = store
    if url is None:
        path = file or default_config_file()
        if file is not None or path.exists():
            try:
                url = load_config(path).gateway.store.url
            except ConfigError as exc:
                fail(str(exc))
    try:
        return AccountingStore.open(url)
    except ConfigError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - driver errors: say which database, never the password
        from tooti.accounting.engine import default_store_url, redact_url

        fail(f"cannot open the store {redact_url(url or default_store_url())}: {type(exc).__name__}: {exc}")
