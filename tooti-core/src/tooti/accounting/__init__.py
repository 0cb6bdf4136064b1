"""Accounting: API keys with budgets and limits, usage rows and signed receipts, on SQLite or PostgreSQL.

One store (:class:`~tooti.accounting.store.AccountingStore`, SQLAlchemy Core over a sync driver)
serves the CLI and the gateway. The gateway reaches it only from worker threads, so the store does
not care which event loop the gateway runs on.
"""

from __future__ import annotations
