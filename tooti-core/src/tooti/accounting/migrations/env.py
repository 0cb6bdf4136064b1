"""Alembic environment: migrate over the connection :mod:`tooti.accounting.migrate` hands in.

There is no ``alembic.ini`` and no URL here: the store owns its engine (SQLite pragmas, psycopg
URL normalisation), so migrations run on exactly the connection the store uses.
"""

from __future__ import annotations

from alembic import context

from tooti.accounting.schema import metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
