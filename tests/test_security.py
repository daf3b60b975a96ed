"""Security promises: loopback by default, the API key, CORS off unless set, ids are not paths,
and protective headers on every response. (The page's CSP is checked in tests/web; the body size limit in
tests/api/test_errors.py.)"""

from __future__ import annotations

import hmac
import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from qa.api import create_app
from qa.api.app import SECURITY_HEADERS
from qa.cli import build_parser, main
from qa.config import Settings
from tests.api.conftest import live_server

KEY = "s3cret-Key-1234"


# --- binding --------------------------------------------------------------------------------------


def test_settings_bind_loopback_by_default(monkeypatch):
    monkeypatch.delenv("QA_HOST", raising=False)
    assert Settings().host == "127.0.0.1"
    assert build_parser().parse_args(["serve"]).host is None  # no flag: the setting decides


def test_qa_serve_binds_the_configured_loopback_address(monkeypatch):
    """`qa serve` hands uvicorn Settings.host (not 0.0.0.0) when no --host is given; nothing is bound here."""
    import uvicorn

    monkeypatch.delenv("QA_HOST", raising=False)
    monkeypatch.delenv("QA_PORT", raising=False)
    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: seen.update(kwargs))
    assert main(["serve"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8000
    assert main(["serve", "--port", "8123"]) == 0
    assert seen["host"] == "127.0.0.1" and seen["port"] == 8123


# --- the API key ----------------------------------------------------------------------------------


@pytest.fixture
def guarded(service) -> TestClient:
    # No `with`: the service is given, so the lifespan loads nothing.
    return TestClient(create_app(service.settings.model_copy(update={"api_key": SecretStr(KEY)}), service=service))


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": KEY[:-1]},  # a prefix of the key
        {"X-API-Key": KEY + "5"},  # the key plus more
        {"X-API-Key": KEY.upper()},
        {"Authorization": f"Basic {KEY}"},
        {"Authorization": "Bearer "},
        {"X-API-Key": "x" * 10_000},
        {"X-API-Key": "clé-secrète".encode()},  # non-ASCII bytes: compared as bytes, never a 500
    ],
)
def test_writes_without_the_exact_key_are_401(guarded, headers):
    for response in (
        guarded.delete("/v1/articles/never-there", headers=headers),
        guarded.post("/v1/articles", json={"articles": [{"id": "a", "title": "t", "body": "b"}]}, headers=headers),
    ):
        assert response.status_code == 401, response.text
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


def test_the_key_is_compared_in_constant_time(guarded, monkeypatch):
    """Every presented key goes through hmac.compare_digest, as bytes."""
    calls: list[tuple[bytes, bytes]] = []
    original = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr("qa.api.deps.hmac.compare_digest", spy)
    assert guarded.delete("/v1/articles/never-there", headers={"X-API-Key": "wrong"}).status_code == 401
    assert calls == [(b"wrong", KEY.encode())]
    calls.clear()
    r = guarded.delete("/v1/articles/never-there", headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 404  # past the guard: the id is simply unknown
    assert calls == [(KEY.encode(), KEY.encode())]


def test_reads_stay_open_with_a_key_set(guarded):
    assert guarded.get("/v1/articles?limit=1").status_code == 200
    assert guarded.get("/v1/stats").status_code == 200


# --- CORS -----------------------------------------------------------------------------------------

ORIGIN = "http://app.example"
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


def test_no_cors_headers_unless_configured(service):
    client = TestClient(create_app(service.settings, service=service))
    for response in (
        client.get("/v1/stats", headers={"Origin": ORIGIN}),
        client.options("/v1/ask", headers=PREFLIGHT),
    ):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")], response.headers
    assert client.options("/v1/ask", headers=PREFLIGHT).status_code == 405


def test_cors_allows_only_the_configured_origins(service):
    settings = service.settings.model_copy(update={"cors_origins": [ORIGIN]})
    client = TestClient(create_app(settings, service=service))
    r = client.options("/v1/ask", headers=PREFLIGHT)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert client.get("/v1/stats", headers={"Origin": ORIGIN}).headers["access-control-allow-origin"] == ORIGIN

    other = {**PREFLIGHT, "Origin": "http://evil.example"}
    assert "access-control-allow-origin" not in client.options("/v1/ask", headers=other).headers
    r = client.get("/v1/stats", headers={"Origin": "http://evil.example"})
    assert r.status_code == 200 and "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize(
    ("value", "origins"),
    [
        ('["http://a.example", "https://b.example:8443"]', ["http://a.example", "https://b.example:8443"]),
        ("http://a.example, https://b.example:8443", ["http://a.example", "https://b.example:8443"]),
        ("http://a.example", ["http://a.example"]),
        ("", []),
    ],
)
def test_cors_origins_from_the_environment(monkeypatch, value, origins):
    monkeypatch.setenv("QA_CORS_ORIGINS", value)
    assert Settings().cors_origins == origins


def test_cors_default_is_empty(monkeypatch):
    monkeypatch.delenv("QA_CORS_ORIGINS", raising=False)
    assert Settings().cors_origins == []


# --- protective headers ---------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(service):
    settings = service.settings.model_copy(update={"max_body_bytes": 1024})
    client = TestClient(create_app(settings, service=service), raise_server_exceptions=False)
    responses = [
        client.get("/healthz"),
        client.get("/readyz"),
        client.get("/v1/stats"),
        client.get("/"),
        client.get("/static/app.js"),
        client.get("/openapi.json"),
        client.get("/v1/nothing"),  # 404
        client.get("/v1/ask"),  # 405
        client.post("/v1/ask", json={"question": ""}),  # 422
        client.post("/v1/ask", content=b"x" * 2048, headers={"content-type": "application/json"}),  # 413
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 200, 200, 200, 404, 405, 422, 413]
    for r in responses:
        for name, value in SECURITY_HEADERS.items():
            assert r.headers.get_list(name) == [value], (r.request.url, name, r.headers)


def test_headers_also_while_loading():
    """A server still loading (no service yet) answers 503 with the same headers."""
    client = TestClient(create_app(Settings()))  # lifespan not run: nothing loads
    r = client.get("/readyz")
    assert r.status_code == 503 and r.headers["x-frame-options"] == "DENY"


# --- article ids are not paths --------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(service) -> Iterator[str]:
    with live_server(create_app(service=service)) as url:
        yield url


@pytest.mark.parametrize(
    "article_id",
    ["../etc/passwd", "a/b", "..", ".", "a..b", "..\\..\\windows", "\\\\server\\share", "/abs"]
    + ["\x00", "a\x1fb", "\u200b"],
)
def test_path_like_ids_are_refused(service, article_id):
    client = TestClient(create_app(service=service))
    before = service.store.manifest().articles
    r = client.post("/v1/articles", json={"articles": [{"id": article_id, "title": "t", "body": "Hà Nội."}]})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["message"].startswith("articles")
    assert service.store.manifest().articles == before


def _raw_request(url: str, method: str, target: str) -> tuple[int, bytes]:
    """Send `target` byte for byte (clients would normalise the dot segments away)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    "target",
    [
        "/v1/articles/..%2F..%2F..%2Fetc%2Fpasswd",
        "/v1/articles/%2e%2e",
        "/v1/articles/..%2F..",
        "/v1/articles/..%5C..%5Cstore.sqlite",
        "/v1/articles/../../etc/passwd",
        "/v1/articles/%2e%2e%2fstore.sqlite",
        "/v1/articles/store.sqlite",
        "/v1/articles/%00",
    ],
)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_path_like_ids_in_the_url_reach_no_file(server, service, method, target):
    before = service.store.manifest()
    status, body = _raw_request(server, method, target)
    assert status in (404, 422), body
    assert b'"error"' in body and b"root:" not in body and b"SQLite" not in body
    assert service.store.manifest().articles == before.articles
