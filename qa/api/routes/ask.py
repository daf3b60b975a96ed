"""POST /v1/ask: a question in, ranked passages with their articles out."""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from qa.api.deps import ServiceDep
from qa.retriever import Hit
from qa.schemas import ArticleRef, AskHit, AskRequest, AskResponse, Scores, Span

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


@router.post("/ask", response_model=AskResponse, summary="Ask a question")
async def ask(request: AskRequest, service: ServiceDep) -> AskResponse:
    started = time.perf_counter()
    # Encoding is CPU-bound torch work: keep it off the event loop so health checks stay responsive.
    result = await run_in_threadpool(
        service.retriever.search, request.question, request.top_k, one_per_article=request.one_per_article
    )
    return AskResponse(
        question=request.question,
        hits=[to_schema(h) for h in result.hits],
        total=result.total,
        took_ms=round((time.perf_counter() - started) * 1000, 2),
        model=service.encoder.name,
    )
