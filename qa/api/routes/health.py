"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request

from qa.api.errors import NotReady
from qa.schemas import Health

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@router.get("/readyz", response_model=Health, summary="The model and index are loaded")
async def readyz(request: Request) -> Health:
    if getattr(request.app.state, "service", None) is None:
        raise NotReady("the model and index are still loading")
    return Health(status="ready")
