"""Real servers on loopback for the tests: the app in a uvicorn thread, or `qa serve` as a subprocess.

Each waits for an event (the server started, /readyz answered 200) and stops waiting only when that can no longer
happen (the thread or process is gone); the timeouts are hang guards that turn a stuck start into a failure.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from fastapi import FastAPI

REPO_ROOT = Path(__file__).resolve().parents[1]
START_GUARD = 240.0  # seconds: loading the model and indexing the seeds on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    condition: Callable[[], bool],
    *,
    what: str,
    alive: Callable[[], bool] = lambda: True,
    guard: float = START_GUARD,
) -> None:
    """Poll `condition` until it holds; fail if `alive()` turns false first, or after `guard` seconds (a hang)."""
    deadline = time.monotonic() + guard
    while not condition():
        if not alive():
            raise RuntimeError(f"{what}: gave up, the process or thread it waited on is gone")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: still not there after {guard:.0f} s")
        time.sleep(0.02)


def _ready(url: str, *, fail_on_failed_load: bool = True) -> bool:
    try:
        r = httpx.get(f"{url}/readyz", timeout=10)
    except httpx.TransportError:
        return False
    if fail_on_failed_load and r.status_code == 503:
        assert "failed" not in r.text, r.text  # the load failed: it will never become ready
    return r.status_code == 200


@contextmanager
def live_server(app: FastAPI, *, wait_ready: bool = True) -> Iterator[str]:
    """Serve `app` with uvicorn on 127.0.0.1:<free port> in a background thread until the block ends; yields the
    base URL once the server listens (and, with `wait_ready`, once /readyz is 200)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="qa-test-server", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, what="the test server starting", alive=thread.is_alive)
        if wait_ready:
            wait_for(lambda: _ready(base_url), what="the test server becoming ready", alive=thread.is_alive)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def start_qa_serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`qa serve` in a subprocess on a free loopback port, output appended to `log`, with `env` over this
    process's environment; returns (process, base URL) once /readyz is 200. The caller stops the process."""
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), what="qa serve becoming ready", alive=lambda: proc.poll() is None)
    except BaseException as exc:
        proc.kill()
        proc.wait(timeout=30)
        raise AssertionError(f"{exc}\n{log.read_text(errors='replace')[-3000:]}") from exc
    return proc, url


@contextmanager
def qa_serve(env: dict[str, str], log: Path) -> Iterator[str]:
    """`start_qa_serve` for the length of a block: yields the base URL, then stops the server."""
    proc, url = start_qa_serve(env, log)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
