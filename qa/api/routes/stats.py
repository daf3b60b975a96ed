"""GET /v1/stats: what the index holds and which model serves it."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter

from qa import __version__
from qa.api.deps import ServiceDep
from qa.schemas import Stats

router = APIRouter(prefix="/v1", tags=["service"])


@router.get(
    "/stats",
    response_model=Stats,
    summary="Index statistics",
    description="Article and passage counts, the embedding model, the index kind and when it was built and updated.",
)
def stats(service: ServiceDep) -> Stats:
    return Stats.model_validate(
        {
            **asdict(service.store.manifest()),
            "load_seconds": round(service.load_seconds, 3),
            "version": __version__,
            "sentence_vectors": service.store.has_sentence_vectors(),
        }
    )
