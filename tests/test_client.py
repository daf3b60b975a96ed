"""The client on its own: import-light, error mapping, and retries (reads only) — no server needed."""

from __future__ import annotations

import socket
import subprocess
import sys

import httpx
import pytest

from qa import client as client_module
from qa.client import (
    AsyncClient,
    BadRequest,
    Client,
    NotFoundError,
    PayloadTooLarge,
    QAConnectionError,
    QAError,
    ServerError,
    ServiceUnavailable,
    Unauthorized,
)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch):
    monkeypatch.setattr(client_module, "_backoff", lambda attempt: 0.0)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def test_importing_the_client_loads_no_server_code():
    code = (
        "import qa.client, sys; "
        "heavy = {'torch', 'faiss', 'fastapi', 'sentence_transformers', 'qa.service', 'qa.api'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _flaky(failures: int, calls: list[httpx.Request]):
    """A transport that fails to connect `failures` times, then answers like the server."""

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if len(calls) <= failures:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "GET":
            return httpx.Response(200, json={"status": "ok"})
        return httpx.Response(
            200, json={"data": [{"id": "a", "passages": 1, "created": True}], "count": 1, "took_ms": 1}
        )

    return handler


def test_reads_are_retried_on_connection_errors():
    calls: list[httpx.Request] = []
    with Client(retries=2, transport=httpx.MockTransport(_flaky(2, calls))) as qa:
        assert qa.health().status == "ok"
    assert len(calls) == 3


def test_reads_give_up_after_the_retries():
    calls: list[httpx.Request] = []
    with (
        Client(retries=1, transport=httpx.MockTransport(_flaky(5, calls))) as qa,
        pytest.raises(QAConnectionError, match="after 2 attempts"),
    ):
        qa.stats()
    assert len(calls) == 2


def test_writes_are_never_retried():
    calls: list[httpx.Request] = []
    with Client(retries=5, transport=httpx.MockTransport(_flaky(10, calls))) as qa:
        with pytest.raises(QAConnectionError, match="POST /v1/articles failed"):
            qa.add_articles([{"id": "a", "title": "t", "body": "b"}])
        with pytest.raises(QAConnectionError, match="DELETE /v1/articles/a failed"):
            qa.delete_article("a")
    assert [c.method for c in calls] == ["POST", "DELETE"]


def test_an_unexpected_answer_is_a_qa_error():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"something": "else"}))
    with Client(transport=transport) as qa, pytest.raises(QAError, match="unexpected response") as caught:
        qa.stats()
    assert caught.value.status == 200


@pytest.mark.anyio
async def test_async_retries_reads_not_writes():
    calls: list[httpx.Request] = []
    async with AsyncClient(retries=3, transport=httpx.MockTransport(_flaky(2, calls))) as qa:
        assert (await qa.ready()).status == "ok"
        assert len(calls) == 3
    calls.clear()
    async with AsyncClient(retries=3, transport=httpx.MockTransport(_flaky(1, calls))) as qa:
        with pytest.raises(QAConnectionError):
            await qa.add_articles([{"id": "a", "title": "t", "body": "b"}])
    assert len(calls) == 1


def test_unreachable_server_is_a_connection_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with Client(f"http://127.0.0.1:{port}", retries=1, timeout=2) as qa, pytest.raises(QAConnectionError) as caught:
        qa.health()
    assert caught.value.status is None and isinstance(caught.value, QAError)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, Unauthorized),
        (404, NotFoundError),
        (413, PayloadTooLarge),
        (422, BadRequest),
        (503, ServiceUnavailable),
        (500, ServerError),
        (502, ServerError),
        (409, QAError),
    ],
)
def test_errors_map_to_classes_and_carry_the_server_fields(status, cls):
    body = {"error": {"code": "some_code", "message": "what to fix", "detail": {"k": 1}}}
    transport = httpx.MockTransport(lambda request: httpx.Response(status, json=body))
    with Client(transport=transport) as qa, pytest.raises(cls) as caught:
        qa.get_article("x")
    error = caught.value
    assert (error.status, error.code, error.message, error.detail) == (status, "some_code", "what to fix", {"k": 1})
    assert str(error) == f"{status} some_code: what to fix"


def test_an_error_not_in_our_shape_keeps_the_text():
    transport = httpx.MockTransport(lambda request: httpx.Response(502, text="Bad Gateway from the proxy"))
    with Client(transport=transport) as qa, pytest.raises(ServerError, match="Bad Gateway from the proxy"):
        qa.health()


def test_api_key_is_sent_as_bearer_and_ids_are_quoted():
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "a/b c", "passages": 2})

    with Client("http://qa.test", api_key="k", transport=httpx.MockTransport(handler)) as qa:
        assert qa.delete_article("a/b c").passages == 2
    assert seen[0].headers["authorization"] == "Bearer k"
    assert seen[0].url.raw_path == b"/v1/articles/a%2Fb%20c"


def _starting(loading_answers: int, calls: list[int]):
    """/readyz: refused once, then 503 `loading_answers` times, then 200."""

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("not listening yet", request=request)
        if len(calls) <= 1 + loading_answers:
            error = {"code": "not_ready", "message": "the model and index are still loading", "detail": None}
            return httpx.Response(503, json={"error": error})
        return httpx.Response(200, json={"status": "ready"})

    return handler


def test_wait_ready_waits_through_refusals_and_503s():
    calls: list[int] = []
    with Client(retries=0, transport=httpx.MockTransport(_starting(3, calls))) as qa:
        assert qa.wait_ready(timeout=10, interval=0.01).status == "ready"
    assert len(calls) == 5


def test_wait_ready_gives_up_after_the_timeout_with_the_last_answer():
    with (
        Client(retries=0, transport=httpx.MockTransport(_starting(10**6, []))) as qa,
        pytest.raises(QAConnectionError, match="not ready after 0.2 s.*still loading"),
    ):
        qa.wait_ready(timeout=0.2, interval=0.01)


def test_wait_ready_stops_at_once_when_the_server_process_is_gone():
    calls: list[int] = []
    with (
        Client(retries=0, transport=httpx.MockTransport(_starting(10**6, calls))) as qa,
        pytest.raises(QAConnectionError, match="server process exited"),
    ):
        qa.wait_ready(timeout=60, interval=0.01, alive=lambda: len(calls) < 3)
    assert len(calls) == 3


@pytest.mark.anyio
async def test_async_wait_ready_matches():
    calls: list[int] = []
    async with AsyncClient(retries=0, transport=httpx.MockTransport(_starting(2, calls))) as qa:
        assert (await qa.wait_ready(timeout=10, interval=0.01)).status == "ready"
    assert len(calls) == 4
