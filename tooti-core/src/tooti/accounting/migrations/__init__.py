"""Alembic migrations of the accounting store (run by :mod:`tooti.accounting.migrate`, never by hand)."""
