"""A real uvicorn server on a free loopback port, in a background thread, for the API and client tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from qa.api import create_app
from qa.client import Client

API_KEY = "s3cret-key"


@contextmanager
def live_server(app: FastAPI, *, wait_ready: bool = True) -> Iterator[str]:
    """Serve `app` on 127.0.0.1:<free port> until the block ends; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        while wait_ready and httpx.get(f"{base_url}/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not become ready")
            time.sleep(0.05)
        yield base_url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="session")
def base_url(service) -> Iterator[str]:
    """The shared service behind a real server (open: no API key, default body limit)."""
    with live_server(create_app(service=service)) as url:
        yield url


@pytest.fixture(scope="session")
def guarded_url(service) -> Iterator[str]:
    """The shared service behind a server that wants an API key for writes and takes small bodies only."""
    settings = service.settings.model_copy(update={"api_key": SecretStr(API_KEY), "max_body_bytes": 64 * 1024})
    with live_server(create_app(settings, service=service)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[Client]:
    with Client(base_url) as c:
        yield c


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
