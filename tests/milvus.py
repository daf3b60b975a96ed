"""A throwaway Milvus server for the tests: `milvus-lite server` on a loopback port over a data folder in a temp
folder, always stopped and removed afterwards; `stop()` and `start()` restart it on the same port and data (a
Milvus outage under load); and a fresh set of collection names per test.

Ready means a new pymilvus client can list the collections. Two things milvus-lite 3.2 does that this works around:
its gRPC server binds with SO_REUSEPORT, so a second server on a port already served starts without complaint and
the kernel splits the connections between them (`start()` therefore refuses a port something still listens on, and
waits for its own "listening" line); and pymilvus 3 shares one connection per address per process and keeps it
after the last client closes (a "new" client made while the server is down then does not fail, and the idle channel
is later sent GOAWAY too_many_pings), so the clients here are dedicated ones, closed for real.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import free_port, wait_for

START_GUARD = 120.0  # seconds: milvus-lite listens within ~1 s; this only turns a hang into a failure
STOP_GUARD = 30.0


def milvus_lite_binary() -> str:
    """The `milvus-lite` executable of this interpreter's environment, else the one on PATH."""
    beside = Path(sys.executable).parent / "milvus-lite"
    found = str(beside) if beside.is_file() else shutil.which("milvus-lite")
    if found is None:
        raise RuntimeError("milvus-lite not found: pip install milvus-lite (>= 3, which has `milvus-lite server`)")
    return found


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _lists_collections(uri: str) -> bool:
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    try:
        client = MilvusClient(uri, timeout=5, dedicated=True)
    except MilvusException:
        return False
    try:
        client.list_collections()
    except MilvusException:
        return False
    finally:
        client.close()
    return True


class MilvusServer:
    """`milvus-lite server --data-dir <folder>/data --host 127.0.0.1 --port <port>`, its output in
    `<folder>/server.log`. `start()` after `stop()` serves the same data on the same port."""

    def __init__(self, folder: Path, port: int) -> None:
        self.folder = folder
        self.data = folder / "data"
        self.log = folder / "server.log"
        self.port = port
        self.uri = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server and return once it answers; fails if it exits first (e.g. the port is taken)."""
        if self.running:
            raise RuntimeError(f"Milvus at {self.uri} is already running")
        if _listening(self.port):  # milvus-lite would share the port silently (SO_REUSEPORT)
            raise RuntimeError(f"port {self.port} already has a listener: another Milvus would answer for this one")
        self.starts += 1
        marker = f"listening on 127.0.0.1:{self.port}"
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
            out.flush()
            offset = out.tell()
            self.process = subprocess.Popen(
                [milvus_lite_binary(), "server", "--data-dir", str(self.data), "--host", "127.0.0.1"]
                + ["--port", str(self.port)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        process = self.process

        def ready() -> bool:
            with self.log.open("rb") as log:
                log.seek(offset)
                return marker.encode() in log.read() and _lists_collections(self.uri)

        try:
            wait_for(ready, what=f"Milvus at {self.uri}", alive=lambda: process.poll() is None, guard=START_GUARD)
        except BaseException as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.log.read_text(errors='replace')[-3000:]}") from exc

    def stop(self) -> None:
        """Terminate the server and wait for it to exit (kill it if it does not); the port is free afterwards."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_GUARD)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=STOP_GUARD)

    def kill(self) -> None:
        """kill -9: no chance to flush anything."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_GUARD)

    def collections(self) -> list[str]:
        from pymilvus import MilvusClient

        client = MilvusClient(self.uri, timeout=10, dedicated=True)
        try:
            return list(client.list_collections())
        finally:
            client.close()


@contextmanager
def milvus_server() -> Iterator[MilvusServer]:
    """A running Milvus server for the length of the block, on a free loopback port; removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="viqa-milvus-"))
    server = MilvusServer(folder, free_port())
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def drop_collections(uri: str, names: Iterator[str] | list[str] | set[str]) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri, timeout=30, dedicated=True)
    try:
        for name in names:
            if client.has_collection(name):
                client.drop_collection(name)
    finally:
        client.close()


@contextmanager
def fresh_collections(uri: str) -> Iterator[str]:
    """A collection-name prefix of its own for the length of the block (`t_<hex>_`); afterwards every collection
    made during the block is dropped, whether it used the prefix or not, so tests never see each other's data."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri, timeout=30, dedicated=True)
    try:
        before = set(client.list_collections())
    finally:
        client.close()
    prefix = f"t_{uuid.uuid4().hex[:12]}_"
    try:
        yield prefix
    finally:
        from pymilvus.exceptions import MilvusException

        try:
            client = MilvusClient(uri, timeout=30, dedicated=True)
            try:
                after = set(client.list_collections())
            finally:
                client.close()
        except MilvusException:  # the server is down (a test stopped it and failed): nothing to drop
            logging.getLogger(__name__).warning("Milvus at %s unreachable: collections not dropped", uri)
        else:
            drop_collections(uri, sorted((after - before) | {n for n in after if n.startswith(prefix)}))
