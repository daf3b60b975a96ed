"""A server still loading answers 503 with Retry-After, and the client waits that long and sends the call again:
a question asked during start-up is answered once the load is done (reads and writes alike)."""

from __future__ import annotations

import httpx
import pytest

from qa.api import create_app
from qa.client import Client, ServiceUnavailable
from tests.api.conftest import live_server


@pytest.fixture
def loading_server(service):
    """A real server in the state of one still loading; yields (url, finish), `finish()` ending the load."""
    app = create_app(service=service)
    app.state.service = None  # what the app holds until its load is done

    def finish() -> None:
        app.state.service = service

    with live_server(app, wait_ready=False) as url:
        yield url, finish


@pytest.mark.parametrize("path", ["/readyz", "/v1/stats", "/v1/articles"])
def test_every_503_while_loading_says_when_to_retry(loading_server, path):
    url, _ = loading_server
    r = httpx.get(f"{url}{path}")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["error"]["code"] == "not_ready"


def test_a_call_made_while_loading_is_answered_after_the_wait(loading_server):
    url, finish = loading_server
    waits: list[float] = []

    def finish_loading(seconds: float) -> None:  # stands in for the wait: the load completes meanwhile
        waits.append(seconds)
        finish()

    with Client(url, retries=2) as qa:
        qa._sleep = finish_loading
        answer = qa.ask("Quận Nam Từ Liêm có bao nhiêu đảng viên?", top_k=1)
    assert waits == [1.0]
    assert "10.254 đảng viên" in answer.hits[0].text


def test_the_client_gives_up_after_its_retries(loading_server):
    url, _ = loading_server
    waits: list[float] = []
    with Client(url, retries=2) as qa, pytest.raises(ServiceUnavailable, match="still loading"):
        qa._sleep = waits.append
        qa.delete_article("x")  # a write: refused before anything was done, so it is retried too
    assert waits == [1.0, 1.0]
