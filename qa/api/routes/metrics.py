"""GET /metrics: the app's metrics for Prometheus (`qa.api.metrics`), outside the OpenAPI schema."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from qa.api.deps import MetricsDep

router = APIRouter(include_in_schema=False)


@router.get("/metrics")
def metrics(request: Request, metrics: MetricsDep) -> Response:
    # A plain def, so it runs in the thread pool: collecting reads the store's manifest from the database.
    body, media_type = metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=media_type)
