"""Bad input that tests/api does not cover yet: huge, invisible and broken text, huge numbers and batches,
awkward articles, and the `qa` command's input. A clear 4xx (or a clean exit code), never a 5xx or a hang,
and nothing half-written."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from qa.api import create_app
from qa.chunking import CHUNKING
from qa.cli import main
from qa.config import Settings
from qa.indexing import Indexer
from qa.retriever import Retriever
from qa.service import Service
from qa.store import Store
from tests.fakes import HashingEncoder
from tests.servers import live_server

JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def url(service) -> Iterator[str]:
    with live_server(create_app(service=service)) as base:
        yield base


def _post(url: str, path: str, body: bytes | dict) -> httpx.Response:
    if isinstance(body, bytes):
        return httpx.post(f"{url}{path}", content=body, headers=JSON, timeout=60)
    return httpx.post(f"{url}{path}", json=body, timeout=60)


def _rejected(r: httpx.Response, *, status: int = 422, names: str = "") -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["message"] and error["code"] in ("invalid_request", "payload_too_large")
    assert names in error["message"], error["message"]
    return error["message"]


# --- questions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "names"),
    [
        ("x" * 10_000, "question"),  # 10 kB
        ("Hà Nội " * 150_000, "question"),  # 1 MB
        ("\x00\x01\x02\x1b", "question"),  # control characters only
        ("\u200b\u200c\ufeff", "question"),  # zero-width characters only
        ("?!… -- ...", "question"),  # punctuation only
        ("\t\n\r\x0b\x0c ", "question"),
    ],
    ids=["10kB", "1MB", "controls", "zero-width", "punctuation", "whitespace"],
)
def test_bad_questions_are_422(url, question, names):
    _rejected(_post(url, "/v1/ask", {"question": question}), names=names)


def test_control_characters_inside_a_question_are_dropped(url):
    r = _post(url, "/v1/ask", {"question": "Quận Nam Từ Liêm\x00 có bao\x07 nhiêu\x1b đảng viên?", "top_k": 1})
    assert r.status_code == 200, r.text
    assert "10.254" in r.json()["hits"][0]["text"]


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b'{"question": "ok", "top_k": 1000000}', "top_k"),
        (b'{"question": "ok", "top_k": -1}', "top_k"),
        (b'{"question": "ok", "offset": 1000000}', "offset"),
        (b'{"question": "ok", "top_k": 5.5}', "top_k"),
        (b'{"question": "ok", "top_k": true}', "top_k"),
        (b'{"question": "ok\\ud800\\udc00\\udfff"}', ""),  # a valid pair followed by a lone low surrogate
        (b'{"question": "\\udfff\\ud800"}', "question"),  # reversed pair
        (b'{"question": "\xc3\x28 \xa0\xa1 \xf0\x28\x8c\xbc"}', ""),  # invalid UTF-8 sequences
        (b'{"question": "\xed\xa0\x80"}', ""),  # a surrogate encoded as UTF-8 bytes (CESU)
        (b'{"question": "ok"' + b" " * 100_000 + b"}", ""),  # fine once whitespace is skipped...
    ],
    ids=["top_k-1e6", "top_k-neg", "offset-1e6", "top_k-float", "top_k-bool", "lone-low", "reversed", "bad-utf8",
         "cesu", "padded"],
)  # fmt: skip
def test_bad_ask_bodies_are_422(url, body, names):
    r = _post(url, "/v1/ask", body)
    if body.endswith(b" " * 10 + b"}"):
        assert r.status_code == 200, r.text  # ...and whitespace is not an error
        return
    _rejected(r, names=names)


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ({"questions": ["Hà Nội"] * 33}, "questions"),
        ({"questions": ["Hà Nội"] * 100_000}, "questions"),
        ({"questions": []}, "questions"),
        ({"questions": ["Hà Nội", "\x00\x01"]}, "questions[1]"),
        ({"questions": ["Hà Nội", "x" * 10_000]}, "questions.1"),
        ({"questions": ["Hà Nội"], "top_k": 10**6}, "top_k"),
    ],
    ids=["33", "100k", "none", "controls", "10kB", "top_k-1e6"],
)
def test_bad_batches_are_422(url, body, names):
    _rejected(_post(url, "/v1/ask/batch", body), names=names)


@pytest.mark.parametrize(
    "body",
    [b'{"questions": ["ok", "\\ud800"]}', b'{"questions": ["ok", "\xff\xfe"]}', b'{"questions": "ok"}'],
    ids=["surrogate", "bad-utf8", "not-a-list"],
)
def test_bad_batch_bodies_are_422(url, body):
    _rejected(_post(url, "/v1/ask/batch", body))


# --- articles -------------------------------------------------------------------------------------

BODY = "Sáng 9/7, UBND quận Cầu Giấy khánh thành cầu đi bộ qua sông Tô Lịch. Cây cầu dài 45 mét."
# A page whose text (about 300,000 characters) is longer than an article's body may be.
LONG_PAGE = "".join(f"<p>Đoạn {i}: Hà Nội khánh thành cầu đi bộ qua sông Tô Lịch.</p>" for i in range(6_000))


def _article(article_id: str, **fields: object) -> dict[str, object]:
    return {"id": article_id, "title": "Cầu đi bộ qua sông Tô Lịch", "body": BODY, **fields}


def _exists(url: str, article_id: str) -> bool:
    status = httpx.get(f"{url}/v1/articles/{article_id}").status_code
    assert status in (200, 404)
    return status == 200


@pytest.mark.parametrize(
    ("article", "names"),
    [
        (_article("bad-blank", body=" \n\t \u200b "), "body"),
        ({"id": "bad-untitled", "body": BODY}, "title"),
        (_article("bad-blank-title", title="\x00\x01"), "title"),
        (_article("bad-big", body="Hà Nội mở cầu mới. " * 260_000), "body"),  # 5 MB
        ({"id": "bad-big-page", "html": "<p>Hà Nội mở cầu mới.</p>" * 90_000}, "html"),  # 2.3 MB of HTML
        ({"id": "bad-long-page", "html": LONG_PAGE}, "html (id 'bad-long-page'): the text read from it"),
        (_article("bad-date", published_at="July 9th 2020"), "published_at"),
        (_article("bad-date2", published_at="2020-13-45"), "published_at"),
        (_article("bad-date3", published_at="9/7/20"), "published_at"),
        (_article("bad-date4", published_at="hôm qua"), "published_at"),
        (_article("bad-date5", published_at=20200709), "published_at"),
        (_article("bad-title", title="t" * 1001), "title"),
        (_article("x" * 201), "id"),
        (_article(""), "id"),
    ],
    ids=["blank-body", "no-title", "control-title", "5MB-body", "2MB-page", "long-page-text", "date-words",
         "date-impossible", "date-short", "date-vietnamese", "date-number", "long-title", "long-id", "empty-id"],
)  # fmt: skip
def test_bad_articles_are_rejected_naming_the_field(url, article, names):
    _rejected(_post(url, "/v1/articles", {"articles": [article]}), names=names)
    assert not (article["id"] and _exists(url, str(article["id"])))


def test_5mb_body_is_413_under_a_smaller_limit(service):
    """The same 5 MB article against a server configured below it: refused before it is read."""
    client = TestClient(create_app(service.settings.model_copy(update={"max_body_bytes": 4 << 20}), service=service))
    r = client.post("/v1/articles", json={"articles": [_article("big", body="Hà Nội mở cầu. " * 350_000)]})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"{}",
        b'{"articles": {}}',
        b'{"articles": [{"id": "bad-utf8", "title": "t", "body": "\xff\xfe\xfd"}]}',
        b'{"articles": [{"id": "bad-surrogate", "title": "t", "body": "x\\udfff"}]}',
        b'{"articles": [{"id": "\\ud800", "title": "t", "body": "b"}]}',
        b'{"articles": [null]}',
    ],
    ids=["empty", "no-articles", "object", "bad-utf8", "surrogate-body", "surrogate-id", "null"],
)
def test_bad_article_bodies_are_422(url, body):
    _rejected(_post(url, "/v1/articles", body))


def test_html_is_accepted_and_stored_as_text(url):
    html = '<p>Hà Nội <b>mở</b> cầu.</p><script>alert("x")</script><img src=x onerror=alert(1)> Xong.'
    r = _post(url, "/v1/articles", {"articles": [_article("test-html", body=html, title="<i>Cầu</i>")]})
    try:
        assert r.status_code == 200, r.text
        stored = httpx.get(f"{url}/v1/articles/test-html")
        assert stored.headers["content-type"] == "application/json"
        assert stored.json()["body"] == html and stored.json()["title"] == "<i>Cầu</i>"
    finally:
        httpx.delete(f"{url}/v1/articles/test-html")


def test_a_rejected_request_writes_none_of_its_articles(url):
    """Two good articles and a bad one in one request: 422, and neither good one exists afterwards."""
    articles = [_article("test-good-1"), _article("test-good-2"), _article("test-bad", published_at="mai")]
    before = httpx.get(f"{url}/v1/stats").json()
    _rejected(_post(url, "/v1/articles", {"articles": articles}), names="articles[2]")
    assert not _exists(url, "test-good-1") and not _exists(url, "test-good-2")
    after = httpx.get(f"{url}/v1/stats").json()
    assert (after["articles"], after["generation"]) == (before["articles"], before["generation"])


def test_duplicate_ids_reject_the_whole_request(url):
    articles = [_article("test-dup-a"), _article("test-dup-b"), _article("test-dup-a")]
    _rejected(_post(url, "/v1/articles", {"articles": articles}), names="test-dup-a")
    assert not _exists(url, "test-dup-a") and not _exists(url, "test-dup-b")


class FailingEncoder(HashingEncoder):
    """Fails on the n-th passage batch: a failure half-way through one request."""

    def __init__(self, fail_on: int) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.batches = 0

    def encode_passages(self, texts, *, batch_size=32, show_progress=False):  # type: ignore[no-untyped-def]
        self.batches += 1
        if self.batches == self.fail_on:
            raise RuntimeError("simulated failure while embedding")
        return super().encode_passages(texts, batch_size=batch_size)


def test_a_failure_half_way_through_a_request_writes_nothing(tmp_path):
    """A big synchronous request (more passages than one commit batch) failing late: none of its articles is kept."""
    encoder = FailingEncoder(fail_on=12)
    settings = Settings(data_dir=tmp_path, seeds=tmp_path / "none")
    store = Store.create(tmp_path / "default", model=encoder.name, dim=encoder.dim, chunking=CHUNKING)
    indexer = Indexer(store, encoder, chunking=CHUNKING)
    service = Service(settings, encoder, store, indexer, Retriever(store, encoder), 0.0)  # type: ignore[arg-type]
    try:
        client = TestClient(create_app(service=service), raise_server_exceptions=False)
        # ~3 passages each, 40 sentences each: ~150 batches (a text repeated is encoded once: the bodies differ)
        articles = [
            _article(
                f"big-{n}", body=" ".join(f"Câu thứ {i} của bài {n} nói về cầu đi bộ ở Cầu Giấy." for i in range(40))
            )
            for n in range(120)
        ]
        r = client.post("/v1/articles", params={"wait": "true"}, json={"articles": articles})
        assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
        assert encoder.batches == encoder.fail_on, "the failure did not come late in the request"
        assert store.manifest().articles == 0 and store.manifest().passages == 0
    finally:
        store.close()


# --- the qa command -------------------------------------------------------------------------------


@pytest.fixture
def cli_env(monkeypatch, tmp_path) -> Path:
    """A fresh data folder with no seeds, and a tiny stand-in model so `qa index` runs in a blink."""
    (tmp_path / "no-seeds").mkdir()
    monkeypatch.setenv("QA_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QA_SEEDS", str(tmp_path / "no-seeds"))
    encoder = HashingEncoder()
    monkeypatch.setattr("qa.encoders.load_encoder", lambda settings: encoder)
    monkeypatch.setattr("qa.service.load_encoder", lambda settings: encoder)
    return tmp_path


@pytest.mark.parametrize("question", ["", " ", "\t\n"])
def test_qa_ask_with_an_empty_question(cli_env, capsys, question):
    assert main(["ask", question]) == 2
    assert capsys.readouterr().err.strip() == "qa: the question is empty"


def _articles_in(data: Path) -> int:
    if not (data / "default").exists():  # bad input found before the index was even created
        return 0
    store = Store.open(data / "default")
    try:
        return store.manifest().articles
    finally:
        store.close()


def _record(n: int) -> str:
    return json.dumps({"id": f"cli-{n}", "title": f"Bài {n}", "body": f"Hà Nội mở cầu số {n}. {BODY}"}) + "\n"


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ('{"id": "cli-x", "title": "t", "body": \n', "invalid JSON"),
        ('{"id": "cli-x", "title": "t"}\n', "body"),
        ('{"id": "cli-x", "title": "t", "body": "b", "published_at": "hôm qua"}\n', "published_at"),
        ("[1, 2]\n", "expected an object"),
    ],
    ids=["broken-json", "no-body", "bad-date", "not-an-object"],
)
def test_qa_index_names_the_bad_line_and_writes_nothing(cli_env, capsys, bad_line, expected):
    path = cli_env / "articles.jsonl"
    path.write_text(_record(1) + _record(2) + bad_line + _record(4), encoding="utf-8")
    assert main(["index", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    [line] = [x for x in err.splitlines() if x.startswith("qa: ")]
    assert f"{path}:3" in line and expected in line, line
    assert _articles_in(cli_env / "data") == 0


def test_qa_index_writes_nothing_when_a_late_line_is_bad(cli_env, capsys):
    """The bad line comes after more than one commit batch of good ones."""
    path = cli_env / "many.jsonl"
    path.write_text("".join(_record(n) for n in range(300)) + "{oops\n", encoding="utf-8")
    assert main(["index", str(path)]) == 1
    assert f"{path}:301" in capsys.readouterr().err
    assert _articles_in(cli_env / "data") == 0
