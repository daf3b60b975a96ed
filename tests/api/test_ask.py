from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service=service)) as c:
        yield c


def test_ask_returns_answer_first_with_article(client):
    r = client.post("/v1/ask", json={"question": "Quận Nam Từ Liêm có bao nhiêu đảng viên?"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["question"] == "Quận Nam Từ Liêm có bao nhiêu đảng viên?"
    assert len(body["hits"]) == 5 and body["took_ms"] > 0
    top = body["hits"][0]
    assert "10.254 đảng viên" in top["text"]
    assert top["article"]["title"].startswith("Chủ tịch HĐND TP Hà Nội kiểm tra")
    assert top["article"]["published_at"] is None and top["passage_id"].startswith("002_793d685470df229a:")
    span = top["highlights"][0]
    assert "10.254" in top["text"][span["start"] : span["end"]]


def test_ask_top_k_and_dates(client):
    r = client.post("/v1/ask", json={"question": "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?", "top_k": 2})
    hits = r.json()["hits"]
    assert len(hits) == 2
    assert hits[0]["article"]["source"] == "ANTD.VN"
    assert hits[0]["article"]["published_at"] == "2019-04-11T16:37:00"


@pytest.mark.parametrize(
    "payload",
    [
        {"question": "   "},
        {"question": ""},
        {},
        {"question": "ok", "top_k": 0},
        {"question": "ok", "top_k": 51},
        {"question": 12},
        {"question": "ok", "unknown": 1},
        {"question": "x" * 2001},
    ],
)
def test_ask_rejects_bad_input_with_one_error_shape(client, payload):
    r = client.post("/v1/ask", json=payload)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["message"]


def test_invalid_json_is_422(client):
    r = client.post("/v1/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_health_and_ready(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_unknown_route_uses_error_shape(client):
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
