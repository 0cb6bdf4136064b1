"""A real, throwaway PostgreSQL server for tests: ``TOOTI_TEST_PG_URL`` if set, else one started here.

CI (``.ci/run``) installs the distribution's PostgreSQL when it is missing, starts a cluster and
exports ``TOOTI_TEST_PG_URL``. On a developer machine with the server binaries but no URL,
:func:`start_temporary_server` starts a private cluster on a free loopback port (as the
``postgres`` user when running as root, which PostgreSQL refuses to run as). Each test gets its own
database from :func:`create_database`, so tests never see each other's rows.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

__all__ = ["TemporaryServer", "create_database", "drop_database", "find_server_binaries", "start_temporary_server"]

URL_ENV = "TOOTI_TEST_PG_URL"


def find_server_binaries() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (PATH first, then Debian's versioned dirs)."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(found).resolve().parent
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return debian[0].parent if debian else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TemporaryServer:
    """A PostgreSQL cluster in a temporary directory; :meth:`stop` ends it and removes the files."""

    def __init__(self, bindir: Path, root: Path, port: int, user: str | None) -> None:
        self.bindir, self.root, self.port, self.user = bindir, root, port, user
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *args: str) -> None:
        subprocess.run(  # noqa: S603 - our own binaries and arguments
            args, check=True, capture_output=True, timeout=120, user=self.user, cwd=self.root
        )

    def start(self) -> None:
        """Create the cluster (trust auth on loopback) and start it; raises ``RuntimeError`` with the server's words."""
        data = self.root / "data"
        try:
            self._run(str(self.bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
            opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
            log = str(self.root / "server.log")
            self._run(str(self.bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", log, "-w", "-t", "60", "start")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = getattr(exc, "stderr", b"") or b""
            raise RuntimeError(f"PostgreSQL did not start: {exc}: {detail.decode(errors='replace')[-500:]}") from exc

    def stop(self) -> None:
        """Stop the server (fast mode) and delete its directory."""
        with contextlib.suppress(Exception):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


def start_temporary_server() -> TemporaryServer:
    """Start a private cluster; raises ``RuntimeError`` saying why when it cannot."""
    bindir = find_server_binaries()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries (initdb, pg_ctl) on this machine")
    user = None
    root = Path(tempfile.mkdtemp(prefix="tooti-pg-"))
    if os.geteuid() == 0:
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root and there is no 'postgres' user to run the server as") from None
        user = "postgres"
        os.chown(root, entry.pw_uid, entry.pw_gid)
    server = TemporaryServer(bindir, root, _free_port(), user)
    server.start()
    return server


def create_database(server_url: str) -> str:
    """Create a fresh database on the server at ``server_url``; return its URL."""
    import psycopg

    name = "tooti_" + uuid.uuid4().hex[:12]
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # name is ours: hex only
    base, _, _ = server_url.rpartition("/")
    return f"{base}/{name}"


def drop_database(db_url: str) -> None:
    """Drop a database made by :func:`create_database` (terminating leftover connections)."""
    import psycopg

    base, _, name = db_url.rpartition("/")
    with contextlib.suppress(Exception), psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
