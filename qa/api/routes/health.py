"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request

from qa.api.deps import get_service
from qa.api.errors import ERROR_RESPONSES
from qa.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up", description="Always 200 while running.")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    summary="The model and index are loaded",
    description="200 once the service can answer questions; 503 while it is still loading.",
    responses={503: ERROR_RESPONSES[503]},
)
async def readyz(request: Request) -> Health:
    get_service(request)
    return Health(status="ready")
