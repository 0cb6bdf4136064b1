"""Bringing a store's schema to the current version with Alembic, programmatically.

Alembic (SQLAlchemy's own migration tool) keeps a version table and runs each missing script in
order, on SQLite through batch mode (table copy) where ``ALTER`` is not enough. Migrations run
when a gateway starts and before every CLI command, so a store is never used at an old version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["HEAD", "current_revision", "revisions", "upgrade"]

_SCRIPTS = "tooti.accounting:migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", _SCRIPTS)
    return config


def revisions() -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(_config())
    return [r.revision for r in reversed(list(script.walk_revisions()))]


HEAD = "head"


def current_revision(engine: Engine) -> str | None:
    """The schema version of the database behind ``engine`` (``None`` when empty)."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, target: str = HEAD) -> None:
    """Run every migration up to ``target`` (default: the newest) in one transaction."""
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Gateways starting together on one PostgreSQL: one migrates, the others wait, then no-op.
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7460211)")
        config.attributes["connection"] = connection
        command.upgrade(config, target)
