"""A real, throwaway PostgreSQL server for tests.

Use as a pytest plugin (``pytest_plugins = ["postgres"]`` in a conftest next to this file) or
import the fixtures into a test module. Fixtures:

``postgres_server``
    session scope: ``initdb`` into a temp dir, ``pg_ctl start`` listening on a Unix socket only
    (no TCP), trust authentication; stopped and removed at the end of the session.
``postgres_url``
    function scope: a fresh, empty database on that server, as a SQLAlchemy URL
    (``postgresql+psycopg://postgres@/test_3?host=/tmp/cs-pg-…&port=…``).

The binaries come from ``$PATH`` or ``/usr/lib/postgresql/*/bin``; without them, or without
psycopg, the tests that need the server are skipped with the reason. PostgreSQL refuses to run
as root, so under root the server runs as the ``postgres`` user (or ``nobody``) via ``runuser``.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

START_TIMEOUT_S = 60


@dataclass(frozen=True)
class PostgresServer:
    """A running server: where its socket is and how to reach a database on it."""

    socket_dir: Path
    port: int
    user: str = "postgres"

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy URL of ``database`` on this server."""
        return (
            f"postgresql+psycopg://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"
        )

    def create_database(self, name: str) -> str:
        """Create an empty database; its URL."""
        import psycopg

        with psycopg.connect(
            host=str(self.socket_dir), port=self.port, user=self.user, autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def find_binary(name: str) -> str | None:
    """The path of a PostgreSQL program, newest installed version first."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_as() -> tuple[list[str], str | None]:
    """The command prefix that drops root, and the user it drops to (None: not root)."""
    if os.geteuid() != 0:
        return [], None
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("PostgreSQL refuses to run as root and runuser is missing")
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return [runuser, "-u", user, "--"], user
    pytest.skip("PostgreSQL refuses to run as root and there is no postgres or nobody user")


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server (skipping the test when PostgreSQL is missing); stop it after."""
    pytest.importorskip("psycopg", reason="psycopg is needed to talk to PostgreSQL")
    initdb, pg_ctl = find_binary("initdb"), find_binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (initdb/pg_ctl not on PATH)")
    prefix, user = _run_as()
    # A short path of our own: a Unix socket path must stay under ~107 bytes.
    root = Path(tempfile.mkdtemp(prefix="cs-pg-"))
    data, log = root / "data", root / "server.log"
    root.chmod(0o755)  # the socket must be reachable by the test process
    if user is not None:
        shutil.chown(root, user=user)
    port = _free_port()
    try:
        init_args = ["-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        init = subprocess.run(
            [*prefix, initdb, *init_args],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
        )
        if init.returncode != 0:
            pytest.fail(f"initdb failed ({init.returncode}):\n{init.stderr[-2000:]}")
        options = f"-k {root} -p {port} -c listen_addresses='' -c fsync=off -c max_connections=200"
        start_args = ["-D", str(data), "-l", str(log), "-w", "-t", str(START_TIMEOUT_S)]
        start = subprocess.run(
            [*prefix, pg_ctl, *start_args, "-o", options, "start"],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S + 10,
        )
        if start.returncode != 0:
            pytest.fail(f"pg_ctl start failed ({start.returncode}); server log:\n{_tail(log)}")
        try:
            yield PostgresServer(root, port)
        finally:
            subprocess.run(
                [*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"],
                capture_output=True,
                timeout=START_TIMEOUT_S,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    with start_postgres() as server:
        yield server


_database_numbers = itertools.count(1)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """The URL of a fresh, empty database on the session's server."""
    return postgres_server.create_database(f"test_{next(_database_numbers)}")
