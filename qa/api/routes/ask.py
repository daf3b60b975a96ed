"""POST /v1/ask and /v1/ask/batch: questions in, ranked passages with their articles out."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from qa.api.deps import MetricsDep, ServiceDep
from qa.api.errors import InvalidRequest
from qa.schemas import AskBatchRequest, AskBatchResponse, AskRequest, AskResponse
from qa.text import normalize

router = APIRouter(prefix="/v1", tags=["ask"])


def _check_has_words(questions: list[str], field: str) -> None:
    # Control characters, zero-width spaces and lone punctuation normalise to nothing worth searching for.
    for n, question in enumerate(questions):
        if not any(ch.isalnum() for ch in normalize(question)):
            where = field if field == "question" else f"{field}[{n}]"
            raise InvalidRequest(
                f"{where}: needs at least one letter or digit (control characters or punctuation alone are not a "
                "question)"
            )


@router.post(
    "/ask",
    response_model=AskResponse,
    summary="Ask a question",
    description="Encode the question, rank the indexed passages by meaning, and return the best `top_k` "
    "(after `offset`), each with its article and the sentence(s) that answer it.",
)
async def ask(request: AskRequest, service: ServiceDep, metrics: MetricsDep) -> AskResponse:
    _check_has_words([request.question], "question")
    # Encoding is CPU-bound work: keep it off the event loop so health checks stay responsive.
    [response] = await run_in_threadpool(service.ask, [request.question], request, stages=metrics)
    return response


@router.post(
    "/ask/batch",
    response_model=AskBatchResponse,
    summary="Ask several questions at once",
    description="Like `/v1/ask` for up to 32 questions, encoded as one batch (faster than one call each). "
    "The options apply to every question; `results` follow the order of `questions`.",
)
async def ask_batch(request: AskBatchRequest, service: ServiceDep, metrics: MetricsDep) -> AskBatchResponse:
    _check_has_words(request.questions, "questions")
    results = await run_in_threadpool(service.ask, request.questions, request, stages=metrics)
    return AskBatchResponse(results=results, took_ms=results[0].took_ms, model=results[0].model)
