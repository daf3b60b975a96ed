"""The API and client tests' servers: the shared service behind a real uvicorn server on a free loopback port
(`tests.servers.live_server`), open or guarded by an API key."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from qa.api import create_app
from qa.client import Client
from tests.servers import live_server

__all__ = ["API_KEY", "live_server"]  # tests import the server helper from here as well as from tests.servers

API_KEY = "s3cret-key"


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
