"""The articles resource through the real server and both clients: list, read, upsert, delete, auth."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from qa.client import AsyncClient, BadRequest, Client, NotFoundError, Unauthorized
from qa.schemas import ArticleDetail, ArticleIn, ArticleList, DeletedArticle, IndexedArticles
from tests.api.conftest import API_KEY

SEED_ID = "002_793d685470df229a"
BODY = (
    "Sáng 9/7, UBND quận Cầu Giấy tổ chức lễ khánh thành cây cầu đi bộ bắc qua sông Tô Lịch. "
    "Cây cầu dài 45 mét, rộng 3 mét, được xây dựng trong 6 tháng với tổng vốn 12 tỷ đồng.\n"
    "Theo lãnh đạo quận, cây cầu giúp người dân hai bên bờ sông đi lại thuận tiện hơn."
)


PAGE = (Path(__file__).resolve().parent.parent / "fixtures" / "html" / "date_line_only.html").read_text(
    encoding="utf-8"
)
BODY_OR_HTML = "give exactly one of 'body' (the article text) or 'html' (the article's web page)"


def _article(article_id: str, **extra: str) -> dict[str, str]:
    return {"id": article_id, "title": "Cầu đi bộ qua sông Tô Lịch khánh thành", "body": BODY, **extra}


def test_list_and_get(client):
    first = client.list_articles(limit=2)
    assert isinstance(first, ArticleList) and len(first.data) == 2 and first.count == 5
    rest = client.list_articles(offset=2, limit=100)
    ids = [a.id for a in first.data + rest.data]
    assert ids == sorted(ids) and len(ids) == 5 and SEED_ID in ids
    assert all(a.passages > 0 for a in first.data + rest.data)

    article = client.get_article(SEED_ID)
    assert isinstance(article, ArticleDetail) and article.title.startswith("Chủ tịch HĐND TP Hà Nội")
    assert article.passages == len(article.passage_ids) and article.passage_ids[0] == f"{SEED_ID}:0"
    assert "10.254" in article.body
    assert client.list_articles(offset=1000).data == []


def test_unknown_article_is_404(client):
    with pytest.raises(NotFoundError, match="no article with id 'nope'") as caught:
        client.get_article("nope")
    assert caught.value.code == "not_found"
    with pytest.raises(NotFoundError):
        client.delete_article("nope")


def test_add_ask_replace_delete(client):
    article_id = "test-cau-to-lich"
    try:
        added = client.add_articles([ArticleIn(**_article(article_id, source="TEST", published_at="09/07/2020"))])
        assert isinstance(added, IndexedArticles) and added.count == 1
        assert added.data[0].id == article_id and added.data[0].created and added.data[0].passages >= 1
        assert client.stats().articles == 6

        answer = client.ask("Cầu đi bộ qua sông Tô Lịch dài bao nhiêu mét?", top_k=1)
        assert answer.hits[0].article.id == article_id and answer.hits[0].article.source == "TEST"
        assert answer.hits[0].article.published_at.isoformat() == "2020-07-09T00:00:00+07:00"

        replaced = client.add_articles([_article(article_id, source="TEST2")])
        assert not replaced.data[0].created
        assert client.get_article(article_id).source == "TEST2"
        assert client.list_articles(limit=100).count == 6
    finally:
        deleted = client.delete_article(article_id)
    assert isinstance(deleted, DeletedArticle) and deleted.passages >= 1
    with pytest.raises(NotFoundError):
        client.get_article(article_id)
    assert client.stats().articles == 5


@pytest.mark.parametrize(
    ("articles", "needle"),
    [
        ([], "articles"),
        ([_article("dup"), _article("dup")], "repeated: dup"),
        ([_article("a", title="   ")], "articles[0] (id 'a'): field 'title': must not be empty"),
        ([_article("a", body="")], "articles.0.body"),
        ([_article("a b")], "articles.0.id"),
        ([_article("a", published_at="yesterday")], "not a date"),
        ([{"id": "a", "title": "t"}], f"articles.0: {BODY_OR_HTML}; got neither"),
        ([_article("a", html=PAGE)], f"articles.0: {BODY_OR_HTML}; got both"),
        ([{"id": "a", "body": BODY}], "articles.0: 'title' is required with 'body'"),
        ([{"id": "a", "html": "<html><body></body></html>"}], "(id 'a'): article 'a': no article text found"),
        ([_article("a", colour="red")], "articles.0.colour"),
    ],
)
def test_bad_articles_are_422_and_write_nothing(client, articles, needle):
    with pytest.raises(BadRequest) as caught:
        client.add_articles(articles)
    assert caught.value.status == 422 and needle in caught.value.message
    assert client.list_articles().count == 5


def test_html_page_is_read_indexed_and_searchable(client):
    """A record with the page's HTML instead of a body: title, date, source and author come from the page."""
    article_id = "test-html-long-bien"
    try:
        added = client.add_articles([ArticleIn(id=article_id, html=PAGE, url="https://longbien.example.vn/a")])
        assert added.data[0].created and added.data[0].passages >= 1
        stored = client.get_article(article_id)
        assert stored.title == "Quận Long Biên trồng mới 5.000 cây xanh ven sông Đuống"
        assert stored.published_at.isoformat() == "2019-04-12T08:15:00+07:00"
        assert (stored.source, stored.author, stored.url) == ("LBO", "Minh Khang", "https://longbien.example.vn/a")
        assert stored.body.startswith("Sáng 11/4, UBND quận Long Biên") and "Tin cùng chuyên mục" not in stored.body

        answer = client.ask("Quận Long Biên đặt mục tiêu trồng mới bao nhiêu cây bóng mát?", top_k=1)
        assert answer.hits[0].article.id == article_id and "5.000 cây bóng mát" in answer.hits[0].text

        titled = client.add_articles([{"id": article_id, "html": PAGE, "title": "Long Biên trồng cây", "source": "X"}])
        assert not titled.data[0].created
        assert (client.get_article(article_id).title, client.get_article(article_id).source) == (
            "Long Biên trồng cây",
            "X",
        )
    finally:
        client.delete_article(article_id)


def test_writes_need_the_api_key_when_set(guarded_url):
    article_id = "test-auth"
    with Client(guarded_url) as anonymous:
        assert anonymous.list_articles().count == 5  # reads stay open
        assert anonymous.ask("Cầu Giấy", top_k=1).hits
        with pytest.raises(Unauthorized, match="needs the API key") as caught:
            anonymous.add_articles([_article(article_id)])
        assert caught.value.status == 401 and caught.value.code == "unauthorized"
        with pytest.raises(Unauthorized):
            anonymous.delete_article(SEED_ID)
    with Client(guarded_url, api_key="wrong") as wrong, pytest.raises(Unauthorized, match="not valid"):
        wrong.delete_article(SEED_ID)
    r = httpx.delete(f"{guarded_url}/v1/articles/{SEED_ID}", headers={"X-API-Key": "wrong"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"

    with Client(guarded_url, api_key=API_KEY) as owner:
        assert owner.add_articles([_article(article_id)]).count == 1
    r = httpx.delete(f"{guarded_url}/v1/articles/{article_id}", headers={"X-API-Key": API_KEY})
    assert r.status_code == 200 and r.json()["id"] == article_id


@pytest.mark.anyio
async def test_async_client_articles(base_url):
    article_id = "test-async/ids are quoted"  # an id the server refuses, sent safely in the path
    async with AsyncClient(base_url) as qa:
        page = await qa.list_articles(limit=1)
        assert page.count == 5 and len(page.data) == 1
        assert (await qa.get_article(SEED_ID)).id == SEED_ID
        with pytest.raises(NotFoundError):
            await qa.get_article(article_id)
        with pytest.raises(BadRequest, match="articles.0.id"):
            await qa.add_articles([_article(article_id)])

        added = await qa.add_articles([_article("test-async")])
        try:
            assert added.data[0].created and (await qa.get_article("test-async")).passages == added.data[0].passages
        finally:
            deleted = await qa.delete_article("test-async")
        assert deleted.id == "test-async"
        with pytest.raises(NotFoundError):
            await qa.delete_article("test-async")
