"""pytest fixtures for tooti and plugin authors, loaded through the ``pytest11`` entry point.

Fixtures:
    fake_backend: a fresh :class:`~tooti.testing.FakeBackend` per test.
    plugin_host: a fresh :class:`~tooti.plugins.host.PluginHost` per test that knows only
        :class:`~tooti.testing.FakeBackend` (no entry points, no environment switches).
    postgres_server_url: a real PostgreSQL server for the session (see :mod:`tooti.testing.postgres`).
    postgres_url: a fresh database on it per test.

Kept import-light: pytest loads this module in every run of any project that has tooti installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

    from tooti.plugins.host import PluginHost
    from tooti.testing.fake import FakeBackend

__all__ = ["fake_backend", "plugin_host", "postgres_server_url", "postgres_url"]


@pytest.fixture
def fake_backend() -> FakeBackend:
    """A fresh fake backend serving ``fake-model``."""
    from tooti.testing.fake import FakeBackend

    return FakeBackend()


@pytest.fixture
def plugin_host() -> PluginHost:
    """A plugin host that sees only the fake backend and the built-in router."""
    from tooti.testing.plugin_hosts import make_plugin_host

    return make_plugin_host()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of a real PostgreSQL server: ``$TOOTI_TEST_PG_URL`` or a private one started for the session.

    When neither is possible the tests that need it fail under ``CI=true`` (CI must run them) and
    are skipped with the reason otherwise.
    """
    import os

    from tooti.testing.postgres import URL_ENV, start_temporary_server

    given = os.environ.get(URL_ENV)
    if given:
        yield given
        return
    try:
        server = start_temporary_server()
    except RuntimeError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and could not start: {exc}")
        pytest.skip(f"no PostgreSQL: {exc} (set {URL_ENV} or install the server)")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database on the session's PostgreSQL server, dropped after the test."""
    from tooti.testing.postgres import create_database, drop_database

    url = create_database(postgres_server_url)
    try:
        yield url
    finally:
        drop_database(url)
