"""The client on its own: import-light, error mapping, filters checked before sending, and retries only where
they add no load (connect errors, 503 with Retry-After), against mock transports and tiny local servers."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer

import httpx
import pytest

from qa import client as client_module
from qa.client import (
    MAX_RETRY_AFTER,
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
from qa.schemas import Filters


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    """Retries go ahead at once; a test that checks the waits records them on its client (`qa._sleep`)."""

    async def no_async_wait(seconds: float) -> None:
        pass

    monkeypatch.setattr(Client, "_sleep", staticmethod(lambda seconds: None))
    monkeypatch.setattr(AsyncClient, "_sleep", staticmethod(no_async_wait))


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
        if request.method == "DELETE":
            return httpx.Response(200, json={"id": "a", "passages": 1})
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


def test_writes_are_retried_on_connection_errors_too():
    # A refused connection carried nothing to the server: sending the write again cannot apply it twice.
    calls: list[httpx.Request] = []
    with Client(retries=2, transport=httpx.MockTransport(_flaky(2, calls))) as qa:
        assert qa.add_articles([{"id": "a", "title": "t", "body": "b"}]).count == 1
    assert [c.method for c in calls] == ["POST"] * 3
    calls.clear()
    with Client(retries=2, transport=httpx.MockTransport(_flaky(1, calls))) as qa:
        assert qa.delete_article("a").passages == 1
    assert [c.method for c in calls] == ["DELETE"] * 2


def test_an_unexpected_answer_is_a_qa_error():
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={"something": "else"}))
    with Client(transport=transport) as qa, pytest.raises(QAError, match="unexpected response") as caught:
        qa.stats()
    assert caught.value.status == 200


@pytest.mark.anyio
async def test_async_retries_reads_and_writes_on_connection_errors():
    calls: list[httpx.Request] = []
    async with AsyncClient(retries=3, transport=httpx.MockTransport(_flaky(2, calls))) as qa:
        assert (await qa.ready()).status == "ok"
        assert len(calls) == 3
    calls.clear()
    async with AsyncClient(retries=3, transport=httpx.MockTransport(_flaky(1, calls))) as qa:
        assert (await qa.add_articles([{"id": "a", "title": "t", "body": "b"}])).count == 1
    assert len(calls) == 2


# --- what is not sent again, against a real server ---------------------------------------------------


Seen = Callable[[], list[str]]


class _ScriptedServer(HTTPServer):
    """One request at a time, in the order the connections arrived; each is recorded and answered by `answer`."""

    def __init__(self, answer: Callable[[BaseHTTPRequestHandler, int], None]) -> None:
        self.answer, self.seen = answer, []
        super().__init__(("127.0.0.1", 0), _Scripted)

    def handle_error(self, request, client_address) -> None:  # a client gone after its timeout: expected here
        pass


class _Scripted(BaseHTTPRequestHandler):
    server: _ScriptedServer

    def _handle(self) -> None:
        if self.path == "/_seen":  # handled after every connection made before it: the count is final
            _reply(self, 200, {"seen": list(self.server.seen)})
            return
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(f"{self.command} {self.path}")
        self.server.answer(self, len(self.server.seen))

    do_GET = do_POST = do_DELETE = _handle

    def log_message(self, *args: object) -> None:
        pass


def _reply(handler: BaseHTTPRequestHandler, status: int, body: object, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    handler.send_response(status)
    headers = {"Content-Type": "application/json", "Content-Length": str(len(data)), **(headers or {})}
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def scripted_server(
    answer: Callable[[BaseHTTPRequestHandler, int], None],
) -> Iterator[tuple[str, Callable[[], list[str]]]]:
    """A real HTTP server on 127.0.0.1 answering by `answer(handler, n)` for its n-th request (from 1); yields its
    URL and `seen()`, every request that reached it ("POST /v1/ask"), counted once all before the call are in."""
    server = _ScriptedServer(answer)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield url, lambda: httpx.get(f"{url}/_seen", timeout=30).json()["seen"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def _unavailable(retry_after: str | None, times: int):
    """503 (with this Retry-After, if any) for the first `times` requests, then the answer of a ready server."""

    def answer(handler: BaseHTTPRequestHandler, n: int) -> None:
        if n <= times:
            error = {"code": "not_ready", "message": "the model and index are still loading", "detail": None}
            _reply(handler, 503, {"error": error}, {"Retry-After": retry_after} if retry_after is not None else {})
        elif handler.command == "POST":
            _reply(handler, 200, {"data": [{"id": "a", "passages": 1, "created": True}], "count": 1, "took_ms": 1})
        else:
            _reply(handler, 200, {"status": "ready"})

    return answer


@pytest.fixture
def slow_server():
    """A server that takes every request in and does not answer until the test has seen the client give up."""
    arrived, release = threading.Event(), threading.Event()

    def answer(handler: BaseHTTPRequestHandler, n: int) -> None:
        arrived.set()
        release.wait(timeout=60)  # then close without answering: that client is gone

    def seen_after_release() -> list[str]:
        release.set()  # the server takes one request at a time: let it go on to the rest
        return seen()

    with scripted_server(answer) as (url, seen):
        try:
            yield url, seen_after_release, arrived
        finally:
            release.set()


@pytest.mark.parametrize("call", [lambda qa: qa.ask("câu hỏi"), lambda qa: qa.add_articles([{"id": "a"}])])
def test_a_read_timeout_is_not_sent_again(slow_server, call):
    # The server has the request and may still be working on it: a second copy would only add to its load.
    url, seen, arrived = slow_server
    with Client(url, timeout=0.3, retries=2) as qa, pytest.raises(QAConnectionError, match="timed out") as caught:
        call(qa)
    assert arrived.is_set() and "not sent again" in caught.value.message
    assert len(seen()) == 1


@pytest.mark.anyio
async def test_async_a_read_timeout_is_not_sent_again(slow_server):
    url, seen, arrived = slow_server
    async with AsyncClient(url, timeout=0.3, retries=2) as qa:
        with pytest.raises(QAConnectionError, match="timed out"):
            await qa.ask("câu hỏi")
    assert arrived.is_set() and seen() == ["POST /v1/ask"]


def test_a_dropped_connection_is_not_sent_again():
    def hang_up(handler: BaseHTTPRequestHandler, n: int) -> None:
        handler.close_connection = True  # no answer at all: the client sees the server disconnect

    with scripted_server(hang_up) as (url, seen), Client(url, retries=2) as qa:
        with pytest.raises(QAConnectionError, match="RemoteProtocolError"):
            qa.ask("câu hỏi")
        assert seen() == ["POST /v1/ask"]


@pytest.mark.parametrize("retry_after", ["0", "1", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_a_503_with_retry_after_is_retried_after_that_wait(retry_after):
    waits: list[float] = []
    with scripted_server(_unavailable(retry_after, times=2)) as (url, seen), Client(url, retries=2) as qa:
        qa._sleep = waits.append  # record the waits instead of sleeping through them
        assert qa.ready().status == "ready"
        # A write too: the server refused it before doing anything.
        assert qa.add_articles([{"id": "a", "title": "t", "body": "b"}]).count == 1
        assert seen() == ["GET /readyz"] * 3 + ["POST /v1/articles"]
    expected = 0.0 if retry_after.startswith("Thu") else float(retry_after)  # a date in the past: at once
    assert waits == [expected, expected]


def test_503s_stop_after_the_retries():
    waits: list[float] = []
    with scripted_server(_unavailable("1", times=10)) as (url, seen), Client(url, retries=2) as qa:
        qa._sleep = waits.append
        with pytest.raises(ServiceUnavailable, match="still loading"):
            qa.stats()
        assert len(seen()) == 3
    assert waits == [1.0, 1.0]


@pytest.mark.parametrize("retry_after", [None, str(int(MAX_RETRY_AFTER) + 1), "soon"])
def test_a_503_without_a_usable_retry_after_is_not_retried(retry_after):
    with scripted_server(_unavailable(retry_after, times=1)) as (url, seen), Client(url, retries=2) as qa:
        with pytest.raises(ServiceUnavailable):
            qa.ask("câu hỏi")
        assert len(seen()) == 1


@pytest.mark.anyio
async def test_async_honours_retry_after():
    waits: list[float] = []

    async def record(seconds: float) -> None:
        waits.append(seconds)

    with scripted_server(_unavailable("1", times=1)) as (url, seen):
        async with AsyncClient(url, retries=2) as qa:
            qa._sleep = record
            assert (await qa.ready()).status == "ready"
        assert len(seen()) == 2
    assert waits == [1.0]


def test_a_connect_error_is_retried_with_the_backoff():
    waits: list[float] = []
    with Client(f"http://127.0.0.1:{_closed_port()}", retries=2, timeout=5) as qa:
        qa._sleep = waits.append
        with pytest.raises(QAConnectionError, match="failed after 3 attempts"):
            qa.ask("câu hỏi")
    assert waits == [0.2, 0.4]


@pytest.mark.parametrize(
    ("outcome", "attempt", "wait"),
    [
        (httpx.ConnectError("refused"), 0, 0.2),
        (httpx.ConnectError("refused"), 1, 0.4),
        (httpx.ConnectTimeout("slow to connect"), 0, 0.2),
        (httpx.ConnectError("refused"), 2, None),  # the retries are spent
        (httpx.ReadTimeout("slow to answer"), 0, None),
        (httpx.WriteTimeout("slow to take the body"), 0, None),
        (httpx.WriteError("broken pipe"), 0, None),
        (httpx.ReadError("reset"), 0, None),
        (httpx.RemoteProtocolError("disconnected"), 0, None),
        (httpx.Response(503, headers={"Retry-After": "3"}), 0, 3.0),
        (httpx.Response(503, headers={"Retry-After": "3"}), 2, None),
        (httpx.Response(503, headers={"Retry-After": "30"}), 0, 30.0),
        (httpx.Response(503, headers={"Retry-After": "31"}), 0, None),
        (httpx.Response(503, headers={"Retry-After": "-1"}), 0, None),
        (httpx.Response(503, headers={"Retry-After": "Tue, 02 Jan 2024 00:00:05 GMT"}), 0, 5.0),
        (httpx.Response(503, headers={"Retry-After": "Mon, 01 Jan 2024 23:00:00 GMT"}), 0, 0.0),
        (httpx.Response(503), 0, None),
        (httpx.Response(500, headers={"Retry-After": "1"}), 0, None),
        (httpx.Response(429, headers={"Retry-After": "1"}), 0, None),
        (httpx.Response(200), 0, None),
    ],
)
def test_the_retry_decision(outcome, attempt, wait):
    now = datetime(2024, 1, 2, tzinfo=UTC)
    assert client_module._retry_delay(outcome, attempt, retries=2, now=now) == wait


def _closed_port() -> int:
    with socket.socket() as s:  # bound, never listening, closed: nobody answers on it
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_a_connection_error():
    port = _closed_port()
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


# --- filters, checked before sending -----------------------------------------------------------------

EXPECTED_DATE = "expected an ISO 8601 date or date-time, or a year (2020) or year-month (2020-05)"


def _recording(sent: list[dict]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        sent.append(body["filters"])
        answer = {"question": "q", "hits": [], "total": 0, "took_ms": 1.0, "model": "m"}
        if "questions" in body:
            return httpx.Response(200, json={"results": [answer], "took_ms": 1.0, "model": "m"})
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"published_from": "0"}, f"filters.published_from: {EXPECTED_DATE}; got '0'"),
        ({"published_to": "2020-02-30"}, f"filters.published_to: {EXPECTED_DATE}; got '2020-02-30'"),
        ({"published_to": "yesterday"}, f"filters.published_to: {EXPECTED_DATE}; got 'yesterday'"),
        (
            {"published_from": 2020},
            f"filters.published_from: expected a string holding {EXPECTED_DATE[9:]}; got 2020 (int)",
        ),
        (
            {"published_from": "2021", "published_to": "2020"},
            "filters: published_from (2021-01-01T00:00:00+07:00) is after published_to "
            "(2020-12-31T23:59:59.999999+07:00)",
        ),
        ({"sources": []}, "filters.sources: List should have at least 1 item after validation, not 0"),
        ({"published": "2020"}, "filters.published: Extra inputs are not permitted"),
    ],
)
def test_bad_filters_are_refused_before_anything_is_sent(filters, message):
    sent: list[dict] = []
    with Client(transport=_recording(sent)) as qa:
        for call in (lambda: qa.ask("q", filters=filters), lambda: qa.ask_batch(["q"], filters=filters)):
            with pytest.raises(BadRequest) as caught:
                call()
            error = caught.value
            assert (error.message, error.status, error.code) == (message, 422, "invalid_request")
            assert error.detail[0]["loc"][:2] == ["body", "filters"]
    assert sent == []


@pytest.mark.anyio
async def test_async_bad_filters_are_refused_before_anything_is_sent():
    sent: list[dict] = []
    async with AsyncClient(transport=_recording(sent)) as qa:
        with pytest.raises(BadRequest, match=r"filters.published_from: expected .*; got '2020-13'"):
            await qa.ask("q", filters={"published_from": "2020-13"})
    assert sent == []


def test_filters_are_sent_as_given():
    sent: list[dict] = []
    with Client(transport=_recording(sent)) as qa:
        qa.ask("q", filters={"published_from": "2020", "published_to": "2020-05-03", "sources": ["ANTD.VN"]})
        qa.ask("q", filters={"published_from": date(2020, 5, 3), "published_to": datetime(2020, 5, 3, 10, 30)})
        qa.ask_batch(["q"], filters={"published_to": "2020-05"})
        qa.ask("q", filters=Filters(published_to="2020"))  # a model: its validated instants
    assert sent == [
        {"published_from": "2020", "published_to": "2020-05-03", "sources": ["ANTD.VN"]},
        {"published_from": "2020-05-03", "published_to": "2020-05-03T10:30:00"},
        {"published_to": "2020-05"},
        {"published_to": "2020-12-31T23:59:59.999999+07:00"},
    ]
