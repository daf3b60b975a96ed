"""One error shape, and never a 500 for bad input: raw bytes against the real server."""

from __future__ import annotations

import socket
import time

import httpx
import pytest

from qa.client import AsyncClient, BadRequest, Client, NotFoundError, PayloadTooLarge, Unauthorized
from tests.api.conftest import API_KEY

JSON = {"content-type": "application/json"}


def _error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    return error


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b'{"question": "\xff\xfe bad utf-8"}',
        b'{"question": "ok", "min_score": NaN}',
        b'{"question": "ok", "top_k": 1e400}',
        b'{"question": "\\ud800"}',
        b'{"question": "ok", "\\udc00": 1}',
        b'{"question": "ok", "filters": {"sources": ["\\ud800"]}}',
        b'{"question": ["a list"]}',
        b'{"question": "ok", "top_k": "five"}',
        b'{"question": "ok", "offset": 99999999999999999999999}',
        b'"just a string"',
        b"[]",
        b"null",
    ],
)
def test_bad_bodies_are_422(base_url, body):
    _error(httpx.post(f"{base_url}/v1/ask", content=body, headers=JSON), 422, "invalid_request")


def test_lone_surrogate_in_article_is_422(base_url):
    body = b'{"articles": [{"id": "x", "title": "\\ud800", "body": "b"}]}'
    _error(httpx.post(f"{base_url}/v1/articles", content=body, headers=JSON), 422, "invalid_request")


def test_wrong_content_type_is_422(base_url):
    r = httpx.post(f"{base_url}/v1/ask", content=b"question=hi", headers={"content-type": "text/plain"})
    _error(r, 422, "invalid_request")


def test_wrong_method_and_route_use_error_shape(base_url):
    _error(httpx.get(f"{base_url}/v1/ask"), 405, "method_not_allowed")
    _error(httpx.get(f"{base_url}/v1/nothing"), 404, "not_found")


def test_oversized_body_is_413_by_content_length(guarded_url):
    big = {"articles": [{"id": "big", "title": "t", "body": "x" * 70_000}]}
    r = httpx.post(f"{guarded_url}/v1/articles", json=big, headers={"X-API-Key": API_KEY})
    error = _error(r, 413, "payload_too_large")
    assert error["detail"] == {"max_bytes": 64 * 1024}
    with Client(guarded_url, api_key=API_KEY) as qa, pytest.raises(PayloadTooLarge, match="larger than"):
        qa.add_articles(big["articles"])


def test_oversized_body_413_survives_a_slow_reader(guarded_url):
    """A client that sends its whole (too large) body and only then reads must get the 413.

    If the server closed the socket with the body unread, the kernel would reset the connection and the
    reset would discard the 413 before this client reads it.
    """
    host, port = guarded_url.removeprefix("http://").split(":")
    body = b"x" * 200_000
    head = f"POST /v1/articles HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.5)  # the answer and the close (or reset) arrive before we read
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"payload_too_large" in answer


def test_oversized_chunked_body_is_413_without_reading_it_all(guarded_url):
    sent = 0

    def chunks():
        nonlocal sent
        for _ in range(10_000):  # would be 160 MB
            sent += 16 * 1024
            yield b"x" * (16 * 1024)

    try:
        r = httpx.post(f"{guarded_url}/v1/ask", content=chunks(), headers=JSON)
    except httpx.TransportError:  # the server may close the socket while we are still sending
        return
    _error(r, 413, "payload_too_large")
    assert sent < 10_000 * 16 * 1024


def test_small_chunked_body_still_works(guarded_url):
    def chunks():
        yield b'{"question": "Qu\xe1\xba\xadn Nam T'
        yield b'\xe1\xbb\xab Li\xc3\xaam?", "top_k": 1}'

    r = httpx.post(f"{guarded_url}/v1/ask", content=chunks(), headers=JSON)
    assert r.status_code == 200, r.text
    assert r.json()["question"] == "Quận Nam Từ Liêm?"


def test_client_surfaces_server_message(client):
    with pytest.raises(BadRequest) as caught:
        client.ask("ok", filters={"colour": "red"})
    assert "filters.colour" in caught.value.message and caught.value.detail


@pytest.mark.anyio
async def test_async_client_error_codes(guarded_url):
    big = [{"id": "big", "title": "t", "body": "x" * 70_000}]
    async with AsyncClient(guarded_url) as anonymous:
        with pytest.raises(Unauthorized):
            await anonymous.add_articles([{"id": "a", "title": "t", "body": "b"}])
        with pytest.raises(PayloadTooLarge):
            await anonymous.add_articles(big)  # the size limit comes before anything else
        with pytest.raises(BadRequest, match="top_k"):
            await anonymous.ask("ok", top_k=0)
        with pytest.raises(NotFoundError):
            await anonymous.get_article("nope")


def test_oversized_body_behind_expect_100_continue_is_refused_before_it_is_sent(guarded_url):
    host, port = guarded_url.removeprefix("http://").split(":")
    head = (
        f"POST /v1/articles HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {10**9}\r\nExpect: 100-continue\r\n\r\n"
    )
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode())  # and never the body: the answer must not wait for it
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower()
