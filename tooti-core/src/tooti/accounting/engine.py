"""Opening the store's database: a SQLite file in the data dir by default, PostgreSQL by URL.

SQLite runs in WAL mode with a busy timeout so the CLI and a running gateway can share one file,
and every write transaction begins ``IMMEDIATE``: the conditional budget UPDATE then never has to
upgrade a read lock mid-transaction (which SQLite answers with "database is locked"). PostgreSQL
URLs are pointed at psycopg 3 whatever driver they name, since that is the one tooti installs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import make_url

from tooti.config.paths import tooti_home
from tooti.errors import ConfigError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["default_store_url", "open_engine", "redact_url"]

_BUSY_TIMEOUT_MS = 10_000


def default_store_url() -> str:
    """The embedded default: ``$TOOTI_HOME/gateway.db``."""
    return f"sqlite:///{tooti_home() / 'gateway.db'}"


def redact_url(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown as a placeholder, never echoed
        return "<unparsable url>"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" hook below issues BEGIN itself
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def open_engine(url: str | None = None) -> Engine:
    """A SQLAlchemy engine for ``url`` (default: :func:`default_store_url`).

    Raises:
        ConfigError: the URL is malformed or names a database other than SQLite or PostgreSQL;
            the message names ``gateway.store.url``.
    """
    raw = url or default_store_url()
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw.removeprefix("postgres://")
    try:
        parsed = make_url(raw)
    except Exception:  # noqa: BLE001 - sqlalchemy raises ArgumentError and friends
        raise ConfigError(f"gateway.store.url: not a database URL: {redact_url(raw)}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            from pathlib import Path

            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed.set(drivername="sqlite+pysqlite"))
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    if backend == "postgresql":
        return create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_size=8,
            max_overflow=8,
            pool_pre_ping=True,
            connect_args={"connect_timeout": 10, "application_name": "tooti"},
        )
    raise ConfigError(f"gateway.store.url: {backend!r} is not supported (use sqlite:///PATH or postgresql://…)")
