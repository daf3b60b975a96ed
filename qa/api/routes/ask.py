"""POST /v1/ask and /v1/ask/batch: questions in, ranked passages with their articles out."""

from __future__ import annotations

import time
from datetime import datetime

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from qa.api.deps import ServiceDep
from qa.api.errors import InvalidRequest
from qa.corpus import VIETNAM_TZ
from qa.retriever import Filters, Hit, SearchResult
from qa.schemas import (
    ArticleRef,
    AskBatchRequest,
    AskBatchResponse,
    AskHit,
    AskRequest,
    AskResponse,
    Scores,
    SearchOptions,
    Span,
)
from qa.schemas import Filters as FiltersIn
from qa.service import Service
from qa.text import normalize

router = APIRouter(prefix="/v1", tags=["ask"])


def to_schema(hit: Hit) -> AskHit:
    article = hit.article
    return AskHit(
        passage_id=hit.passage.id,
        text=hit.passage.text,
        score=hit.score,
        scores=Scores(dense=hit.dense_score, lexical=hit.lexical_score),
        highlights=[Span(start=s, end=e) for s, e in hit.highlights],
        article=ArticleRef(
            id=article.id,
            title=article.title,
            published_at=article.published_at,
            source=article.source,
            author=article.author,
            url=article.url,
        ),
    )


def _local(value: datetime | None) -> datetime | None:
    # The store keeps naive Vietnam local times; an aware bound is converted to that clock.
    return value.astimezone(VIETNAM_TZ).replace(tzinfo=None) if value and value.tzinfo else value


def _filters(given: FiltersIn | None) -> Filters | None:
    if given is None:
        return None
    return Filters(
        published_from=_local(given.published_from),
        published_to=_local(given.published_to),
        sources=tuple(given.sources) if given.sources is not None else None,
        article_ids=tuple(given.article_ids) if given.article_ids is not None else None,
    )


def _nothing_matches(service: Service, filters: Filters | None) -> bool:
    # Workaround: Retriever.search_many raises on filters that match no passage (an empty pool); remove once
    # qa/retriever.py answers those with an empty result itself.
    if filters is None or filters.is_empty():
        return False
    matching = service.store.keys_matching(
        published_from=filters.published_from,
        published_to=filters.published_to,
        sources=filters.sources,
        article_ids=filters.article_ids,
    )
    return len(matching) == 0


def _check_has_words(questions: list[str], field: str) -> None:
    # Control characters, zero-width spaces and lone punctuation normalise to nothing worth searching for.
    for n, question in enumerate(questions):
        if not any(ch.isalnum() for ch in normalize(question)):
            where = field if field == "question" else f"{field}[{n}]"
            raise InvalidRequest(
                f"{where}: needs at least one letter or digit (control characters or punctuation alone are not a "
                "question)"
            )


def _search(service: Service, questions: list[str], options: SearchOptions) -> list[SearchResult]:
    filters = _filters(options.filters)
    if _nothing_matches(service, filters):
        return [SearchResult(hits=[], total=0) for _ in questions]
    return service.retriever.search_many(
        questions,
        options.top_k,
        offset=options.offset,
        filters=filters,
        min_score=options.min_score,
        one_per_article=options.one_per_article,
        with_highlights=options.highlight,
    )


def _response(question: str, result: SearchResult, took_ms: float, model: str) -> AskResponse:
    return AskResponse(
        question=question, hits=[to_schema(h) for h in result.hits], total=result.total, took_ms=took_ms, model=model
    )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


@router.post(
    "/ask",
    response_model=AskResponse,
    summary="Ask a question",
    description="Encode the question, rank the indexed passages by meaning, and return the best `top_k` "
    "(after `offset`), each with its article and the sentence(s) that answer it.",
)
async def ask(request: AskRequest, service: ServiceDep) -> AskResponse:
    started = time.perf_counter()
    _check_has_words([request.question], "question")
    # Encoding is CPU-bound torch work: keep it off the event loop so health checks stay responsive.
    [result] = await run_in_threadpool(_search, service, [request.question], request)
    return _response(request.question, result, _elapsed_ms(started), service.encoder.name)


@router.post(
    "/ask/batch",
    response_model=AskBatchResponse,
    summary="Ask several questions at once",
    description="Like `/v1/ask` for up to 32 questions, encoded as one batch (faster than one call each). "
    "The options apply to every question; `results` follow the order of `questions`.",
)
async def ask_batch(request: AskBatchRequest, service: ServiceDep) -> AskBatchResponse:
    started = time.perf_counter()
    _check_has_words(request.questions, "questions")
    results = await run_in_threadpool(_search, service, request.questions, request)
    took_ms = _elapsed_ms(started)
    model = service.encoder.name
    return AskBatchResponse(
        results=[_response(q, r, took_ms, model) for q, r in zip(request.questions, results, strict=True)],
        took_ms=took_ms,
        model=model,
    )
