"""POST /v1/ask and /v1/ask/batch, in-process and through a real server with both clients."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.client import AsyncClient, BadRequest
from qa.schemas import AskBatchResponse, AskResponse, Filters


@pytest.fixture(scope="module")
def app_client(service):
    with TestClient(create_app(service=service)) as c:
        yield c


def test_ask_returns_answer_first_with_article(app_client):
    r = app_client.post("/v1/ask", json={"question": "Quận Nam Từ Liêm có bao nhiêu đảng viên?"})
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


def test_the_answer_is_one_sentence_of_a_top_hit(app_client):
    body = app_client.post("/v1/ask", json={"question": "Quận Nam Từ Liêm có bao nhiêu đảng viên?"}).json()
    answer = body["answer"]
    assert "10.254 đảng viên" in answer["text"] and not answer["in_title"]
    [hit] = [h for h in body["hits"] if h["passage_id"] == answer["passage_id"]]
    assert hit["text"][answer["start"] : answer["end"]] == answer["text"]
    assert {"start": answer["start"], "end": answer["end"]} in hit["highlights"]  # the answer is its hit's highlight
    assert answer["article"] == hit["article"] and 0.0 < answer["score"] <= 1.0


def test_the_answer_does_not_depend_on_the_page(app_client):
    question = "Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?"
    first = app_client.post("/v1/ask", json={"question": question}).json()
    for options in ({"top_k": 1}, {"offset": 5}, {"top_k": 2, "offset": 3}):
        page = app_client.post("/v1/ask", json={"question": question, **options}).json()
        assert page["answer"] == first["answer"], options
    assert "11.085,046" in first["answer"]["text"]


def test_no_answer_when_nothing_answers_or_highlights_are_off(app_client):
    for question in ("Giá vàng hôm nay bao nhiêu?", "bitcoin price"):  # nothing in the seeds says
        uncovered = app_client.post("/v1/ask", json={"question": question}).json()
        assert uncovered["answer"] is None and uncovered["hits"], question
    plain = app_client.post(
        "/v1/ask", json={"question": "Quận Nam Từ Liêm có bao nhiêu đảng viên?", "highlight": False}
    ).json()
    assert plain["answer"] is None and plain["hits"]


def test_a_question_without_tone_marks_says_how_it_was_understood(app_client):
    typed = "quan Nam Tu Liem co bao nhieu dang vien?"
    body = app_client.post("/v1/ask", json={"question": typed}).json()
    assert body["question"] == typed and body["understood_as"] == "quận Nam Từ Liêm có bao nhiêu đảng viên?"
    assert "10.254 đảng viên" in body["hits"][0]["text"] and "10.254" in body["answer"]["text"]
    as_typed = app_client.post("/v1/ask", json={"question": typed, "restore": False}).json()
    assert as_typed["understood_as"] is None and as_typed["hits"]
    for marked in ("Quận Nam Từ Liêm có bao nhiêu đảng viên?", "bitcoin price"):  # read as typed
        assert app_client.post("/v1/ask", json={"question": marked}).json()["understood_as"] is None, marked
    batch = app_client.post("/v1/ask/batch", json={"questions": [typed, "bitcoin price"]}).json()
    assert [r["understood_as"] for r in batch["results"]] == [body["understood_as"], None]


def test_a_title_that_states_the_answer_is_the_answer(app_client):
    """News titles often hold the answer alone ("giá 1,3 tỷ đồng"): the title is a candidate like a sentence."""
    body = (
        "Mẫu điện thoại mới của Apple vừa chính thức lên kệ tại các cửa hàng trong nước sáng nay. "
        "Máy có màn hình OLED tràn viền, camera kép phía sau và nhận diện khuôn mặt. "
        "Nhiều người dùng đã xếp hàng từ sớm để mua máy. Các cửa hàng cho biết lượng đặt trước cao hơn dự kiến."
    )
    title = "iPhone X giá 1,3 tỷ đồng tại Việt Nam"
    article = {"id": "test-title-answer", "title": title, "body": body, "source": "Test"}
    assert app_client.post("/v1/articles", json={"articles": [article]}).status_code == 200
    try:
        for question in ("iPhone X giá bao nhiêu?", "iphone x gia bao nhieu"):
            answer = app_client.post("/v1/ask", json={"question": question}).json()["answer"]
            assert answer["in_title"] and answer["text"] == title, question
            assert (answer["start"], answer["end"]) == (0, len(title))
            assert answer["passage_id"].startswith("test-title-answer:") and answer["article"]["title"] == title
    finally:
        assert app_client.delete("/v1/articles/test-title-answer").status_code == 200


def test_the_batch_form_answers_each_question(app_client):
    questions = ["Quận Nam Từ Liêm có bao nhiêu đảng viên?", "Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?"]
    results = app_client.post("/v1/ask/batch", json={"questions": questions}).json()["results"]
    assert "10.254" in results[0]["answer"]["text"] and "11.085,046" in results[1]["answer"]["text"]


def test_ask_top_k_and_dates(app_client):
    r = app_client.post("/v1/ask", json={"question": "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?", "top_k": 2})
    hits = r.json()["hits"]
    assert len(hits) == 2
    assert hits[0]["article"]["source"] == "ANTD.VN"
    assert hits[0]["article"]["published_at"] == "2019-04-11T16:37:00+07:00"


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
        {"question": "ok", "filters": {"published_from": 21}},  # not read as a Unix timestamp
        {"question": "ok", "filters": {"published_to": True}},
    ],
)
def test_ask_rejects_bad_input_with_one_error_shape(app_client, payload):
    r = app_client.post("/v1/ask", json=payload)
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_request" and error["message"]


def test_invalid_json_is_422(app_client):
    r = app_client.post("/v1/ask", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


def test_health_and_ready(app_client):
    assert app_client.get("/healthz").json() == {"status": "ok"}
    assert app_client.get("/readyz").json() == {"status": "ready"}


def test_unknown_route_uses_error_shape(app_client):
    r = app_client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


# --- through the real server and both clients -------------------------------------------------------

QUESTION = "Quận Nam Từ Liêm có bao nhiêu đảng viên?"


def test_client_ask_options(client):
    answer = client.ask(QUESTION, top_k=3)
    assert isinstance(answer, AskResponse) and len(answer.hits) == 3 and answer.model
    assert "10.254 đảng viên" in answer.hits[0].text and answer.hits[0].highlights
    assert answer.hits[0].scores.dense is not None

    page2 = client.ask(QUESTION, top_k=2, offset=1)
    assert [h.passage_id for h in page2.hits] == [h.passage_id for h in answer.hits[1:3]]
    assert page2.total == answer.total

    plain = client.ask(QUESTION, top_k=3, highlight=False)
    assert all(h.highlights == [] for h in plain.hits)

    assert answer.understood_as is None
    unmarked = client.ask("quan Nam Tu Liem co bao nhieu dang vien?", top_k=3)
    assert unmarked.understood_as == QUESTION.replace("Quận", "quận")
    assert client.ask("quan Nam Tu Liem co bao nhieu dang vien?", restore=False).understood_as is None

    distinct = client.ask(QUESTION, top_k=5, one_per_article=True)
    assert len({h.article.id for h in distinct.hits}) == len(distinct.hits)

    strict = client.ask(QUESTION, top_k=50, min_score=answer.hits[0].score - 1e-6)
    assert [h.passage_id for h in strict.hits] == [answer.hits[0].passage_id]


def test_client_ask_filters(client):
    only = client.ask(QUESTION, filters=Filters(sources=["ANTD.VN"]))
    assert only.hits and {h.article.source for h in only.hits} == {"ANTD.VN"}

    nobody = client.ask(QUESTION, filters={"sources": ["NOBODY"]})
    assert nobody.hits == [] and nobody.total == 0

    article_id = "002_793d685470df229a"
    mine = client.ask(QUESTION, filters={"article_ids": [article_id]})
    assert {h.article.id for h in mine.hits} == {article_id}

    # Aware bounds are compared on the Vietnam clock (the one 2019 article is of 16:37 there); a bare date as the
    # upper bound holds its whole day; undated articles fail a date filter.
    after = client.ask(QUESTION, filters={"published_from": "2019-04-11T09:38:00Z", "published_to": "2019-04-11"})
    assert after.hits == [] and after.total == 0
    window = client.ask(QUESTION, filters={"published_from": "2019-04-11T09:37:00Z", "published_to": "2019-04-11"})
    assert window.hits and {h.article.id for h in window.hits} == {"004_883b030afed6ad88"}


def test_client_ask_batch(client):
    questions = [QUESTION, "Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?"]
    batch = client.ask_batch(questions, top_k=2)
    assert isinstance(batch, AskBatchResponse)
    assert [r.question for r in batch.results] == questions
    single = client.ask(questions[1], top_k=2)
    assert [h.passage_id for h in batch.results[1].hits] == [h.passage_id for h in single.hits]


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda c: c.ask("   "), "question"),
        (lambda c: c.ask("ok", top_k=0), "top_k"),
        (lambda c: c.ask("ok", filters={"sources": []}), "filters.sources"),
        (lambda c: c.ask("ok", filters={"published_from": "2020-01-02", "published_to": "2020-01-01"}), "after"),
        (lambda c: c.ask_batch([]), "questions"),
        (lambda c: c.ask_batch(["q"] * 33), "at most 32"),
    ],
)
def test_client_ask_invalid_is_bad_request(client, call, needle):
    with pytest.raises(BadRequest) as caught:
        call(client)
    assert caught.value.status == 422 and caught.value.code == "invalid_request"
    assert needle in caught.value.message


@pytest.mark.anyio
async def test_async_client_ask_and_batch(base_url):
    async with AsyncClient(base_url) as qa:
        answer = await qa.ask(QUESTION, top_k=2)
        assert "10.254 đảng viên" in answer.hits[0].text
        batch = await qa.ask_batch([QUESTION, QUESTION], top_k=1)
        assert [r.hits[0].passage_id for r in batch.results] == [answer.hits[0].passage_id] * 2
        with pytest.raises(BadRequest, match="top_k"):
            await qa.ask(QUESTION, top_k=51)


@pytest.mark.parametrize("options", [{"question": "bad \ud800 text"}, {"question": "ok", "min_score": float("nan")}])
def test_client_refuses_what_json_cannot_carry(client, options):
    with pytest.raises(BadRequest, match="cannot encode") as caught:
        client.ask(**options)
    assert caught.value.status is None
