"""The articles resource: list, read, add or replace (upsert by id), delete."""

from __future__ import annotations

import sys
import time
import unicodedata
from collections import Counter
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.concurrency import run_in_threadpool

from qa.api.deps import ServiceDep, WriteAccess
from qa.api.errors import ERROR_RESPONSES, InvalidRequest, NotFound
from qa.corpus import ArticleError, article_from_record
from qa.domain import Article
from qa.indexing import API
from qa.schemas import (
    ArticleDetail,
    ArticleIn,
    ArticleList,
    ArticleRef,
    ArticlesIn,
    ArticleSummary,
    DeletedArticle,
    IndexedArticle,
    IndexedArticles,
)
from qa.service import Service

router = APIRouter(prefix="/v1/articles", tags=["articles"])

ArticleId = Annotated[str, Path(description="The article's id.", examples=["002_793d685470df229a"])]


def _summary(article: Article, passages: int) -> dict[str, object]:
    return {**ArticleRef.model_validate(article, from_attributes=True).model_dump(), "passages": passages}


# A news article is a few thousand characters; this bounds the embedding work one article can ask for.
MAX_BODY_CHARS = 200_000
# A news page with its scripts and styles stays well under this; it bounds the extraction work of one page.
MAX_HTML_CHARS = 2_000_000


def _check_size(what: str, chars: int, limit: int, advice: str = "split the text into several articles") -> None:
    if chars > limit:
        raise InvalidRequest(f"{what}: {chars:,} characters, at most {limit:,}; {advice}")


def _check_fields(n: int, item: ArticleIn) -> None:
    where = f"articles[{n}]"
    # Ids are keys, never paths; dot segments could not even be addressed in a URL.
    if item.id == "." or ".." in item.id:
        raise InvalidRequest(f"{where}.id: {item.id!r} must not be '.' or contain '..'")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in item.id):
        raise InvalidRequest(f"{where}.id: {item.id!r} must not contain control or invisible characters")
    _check_size(f"{where}.body (id {item.id!r})", len(item.body or ""), MAX_BODY_CHARS)
    _check_size(f"{where}.html (id {item.id!r})", len(item.html or ""), MAX_HTML_CHARS, "send the article's page only")


def _to_article(n: int, item: ArticleIn) -> Article:
    try:
        article = article_from_record(item.model_dump(exclude_none=True))
    except ArticleError as exc:
        raise InvalidRequest(f"articles[{n}] (id {item.id!r}): {exc}") from None
    if item.html is not None:  # the text read from a page is held to the limit a body is
        _check_size(f"articles[{n}].html (id {item.id!r}): the text read from it", len(article.body), MAX_BODY_CHARS)
    return article


def _to_articles(body: ArticlesIn) -> list[Article]:
    for n, item in enumerate(body.articles):
        _check_fields(n, item)
    dupes = sorted(i for i, n in Counter(a.id for a in body.articles).items() if n > 1)
    if dupes:
        raise InvalidRequest(f"article ids must be distinct within one request; repeated: {', '.join(dupes)}")
    return [_to_article(n, item) for n, item in enumerate(body.articles)]


def _index(service: Service, articles: list[Article]) -> list[IndexedArticle]:
    statuses = service.indexer.statuses(articles)  # an unchanged article is not encoded again
    kept = service.store.passage_counts([i for i, status in statuses.items() if status == "unchanged"])
    # One request is one transaction: a failure or a crash leaves none of its articles, never some.
    written = [a for a in articles if statuses[a.id] != "unchanged"]
    counts = service.indexer.add(written, origin=API, commit_every=sys.maxsize)
    return [
        IndexedArticle(
            id=a.id,
            passages=kept[a.id] if a.id in kept else counts.get(a.id, 0),
            created=statuses[a.id] == "created",
            status=statuses[a.id],
        )
        for a in articles
    ]


def _delete(service: Service, article_id: str) -> DeletedArticle:
    passages = service.store.passage_counts([article_id])[article_id]
    if not service.indexer.delete([article_id]):
        raise NotFound(f"no article with id {article_id!r}")
    return DeletedArticle(id=article_id, passages=passages)


@router.get("", response_model=ArticleList, summary="List articles", description="Articles ordered by id, paged.")
def list_articles(
    service: ServiceDep,
    offset: Annotated[int, Query(ge=0, le=2**31, description="Skip this many articles.")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
) -> ArticleList:
    articles = service.store.articles(offset=offset, limit=limit)
    counts = service.store.passage_counts([a.id for a in articles])
    data = [ArticleSummary.model_validate(_summary(a, counts[a.id])) for a in articles]
    return ArticleList(data=data, count=service.store.manifest().articles)


@router.get(
    "/{article_id}",
    response_model=ArticleDetail,
    summary="Read one article",
    description="The article with its normalised text and the ids of its passages.",
    responses={404: ERROR_RESPONSES[404]},
)
def get_article(article_id: ArticleId, service: ServiceDep) -> ArticleDetail:
    article = service.store.article(article_id)
    if article is None:
        raise NotFound(f"no article with id {article_id!r}")
    passage_ids = [p.id for p in service.store.passages_of(article_id)]
    return ArticleDetail.model_validate(
        {**_summary(article, len(passage_ids)), "body": article.body, "passage_ids": passage_ids}
    )


@router.post(
    "",
    response_model=IndexedArticles,
    summary="Add or replace articles",
    description="Chunk, embed and store one or more articles (an existing id is replaced). The index is "
    "updated in place and saved before the response returns. Needs the API key when `QA_API_KEY` is set.",
    dependencies=[WriteAccess],
    responses={401: ERROR_RESPONSES[401]},
)
async def add_articles(body: ArticlesIn, request: Request, service: ServiceDep) -> IndexedArticles:
    started = time.perf_counter()
    articles = await run_in_threadpool(_to_articles, body)  # reading HTML pages is CPU work too
    # Encoding is CPU heavy: off the event loop, and one write at a time so batches do not interleave.
    async with request.app.state.write_lock:
        data = await run_in_threadpool(_index, service, articles)
    return IndexedArticles(data=data, count=len(data), took_ms=round((time.perf_counter() - started) * 1000, 2))


@router.delete(
    "/{article_id}",
    response_model=DeletedArticle,
    summary="Delete an article",
    description="Remove the article and its passages from the index. Needs the API key when `QA_API_KEY` is set.",
    dependencies=[WriteAccess],
    responses={401: ERROR_RESPONSES[401], 404: ERROR_RESPONSES[404]},
)
async def delete_article(article_id: ArticleId, request: Request, service: ServiceDep) -> DeletedArticle:
    async with request.app.state.write_lock:
        return await run_in_threadpool(_delete, service, article_id)
