"""A throwaway PostgreSQL server for the tests: a cluster in a temp folder (`initdb` + `pg_ctl`) on a loopback port,
no system service touched, always stopped and removed afterwards; and a fresh database in it per test.

PostgreSQL refuses to run as root (as CI's tests do): the cluster then belongs to, and runs as, an unprivileged
user (`nobody`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port

# Debian's package installs the binaries per major version; /usr/local/bin or PATH may hold them too.
_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
USER = "viqa"  # the cluster's superuser (trust authentication, loopback only)
RUN_AS = "nobody"  # who owns and runs the cluster when the tests run as root


def _binary(name: str) -> str:
    found = shutil.which(name) or next((str(d / name) for d in _BIN_DIRS if (d / name).is_file()), None)
    if found is None:
        raise RuntimeError(f"{name} not found: install PostgreSQL (Debian: apt-get install postgresql)")
    return found


def _run(args: list[str], folder: Path) -> None:
    """Run a PostgreSQL tool, as `RUN_AS` when we are root; fail with its output."""
    command = ["runuser", "-u", RUN_AS, "--", *args] if os.geteuid() == 0 else args
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120)
    if done.returncode:
        log = folder / "server.log"
        server = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
        raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stdout}{done.stderr}{server}")


class PostgresServer:
    """A cluster in `folder` on a loopback port; `stop()` and `start()` restart it with the same data and port (a
    database outage under load). Its URL names the database `postgres`."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = port
        self.url = f"postgresql+psycopg://{USER}@127.0.0.1:{port}/postgres"
        self.running = False

    def init(self) -> None:
        _run([_binary("initdb"), "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync"],
             self.folder)  # fmt: skip

    def start(self) -> None:
        """Start the cluster; returns once it accepts connections (`pg_ctl -w`)."""
        # fsync off: a test server's data need not survive a power cut, and it makes CREATE DATABASE quick.
        options = f"-p {self.port} -h 127.0.0.1 -k {self.folder} -F"
        _run([_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start"],
             self.folder)  # fmt: skip
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the cluster and wait until it is down: `fast` rolls back open transactions and drops the clients'
        connections (what a restart by an operator does), `immediate` is a crash (recovery at the next start)."""
        if self.running:
            self.running = False
            _run([_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop"], self.folder)


@contextmanager
def postgres_cluster() -> Iterator[PostgresServer]:
    """A running PostgreSQL cluster for the length of the block, that a test may stop and start again."""
    folder = Path(tempfile.mkdtemp(prefix="viqa-postgres-"))  # not under pytest's tmp_path: RUN_AS can't enter it
    if os.geteuid() == 0:
        shutil.chown(folder, RUN_AS)
    server = PostgresServer(folder, free_port())
    try:
        server.init()
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def postgres_server() -> Iterator[str]:
    """A running PostgreSQL cluster for the length of the block; yields its SQLAlchemy URL (database `postgres`)."""
    with postgres_cluster() as server:
        yield server.url


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server at `server_url` for the length of the block; yields its URL. Dropped
    afterwards, even while a connection to it is still open."""
    import sqlalchemy as sa

    name = f"t_{uuid.uuid4().hex}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")  # CREATE DATABASE refuses a transaction
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        try:
            yield sa.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f"DROP DATABASE {name} WITH (FORCE)")
    finally:
        admin.dispose()
