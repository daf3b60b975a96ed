"""FastAPI app factory; the lifespan loads the service (model + index) once per process, in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa import __version__
from qa.api.errors import ERROR_RESPONSES, BodySizeLimit, install_error_handlers
from qa.api.metrics import Metrics, RequestMetrics
from qa.api.routes import articles, ask, health, metrics, stats, web
from qa.config import Settings
from qa.service import Service

log = logging.getLogger(__name__)

DESCRIPTION = """
Ask questions in Vietnamese (or English) over a collection of news articles and get back the passages that
answer them, ranked, with the answering sentences marked.

* **Reads** (`/v1/ask`, `/v1/articles` GET, `/v1/stats`) are always open.
* **Writes** (`POST /v1/articles`, `DELETE /v1/articles/{id}`) need the API key when the server sets `QA_API_KEY`.
* Every error has one shape: `{"error": {"code", "message", "detail"}}`.
"""


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class SecurityHeaders:
    """ASGI middleware: every response says no sniffing, no referrer, no framing (unless a route set its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


async def _load(app: FastAPI, settings: Settings) -> None:
    try:
        app.state.service = await run_in_threadpool(Service.load, settings)
    except Exception as exc:
        log.exception("loading the model and index failed")
        app.state.not_ready_reason = f"loading the model and index failed: {exc}"


def create_app(settings: Settings | None = None, *, service: Service | None = None) -> FastAPI:
    """Build the app.

    Without `service` the lifespan loads one from `settings` in the background: `/healthz` answers at once,
    `/readyz` and the `/v1` routes answer 503 until the load is done. Pass `service` to serve an already-loaded
    one (tests, embedding in another process); `settings` then still sets the API's own options (key, body
    limit) and defaults to the service's.
    """
    settings = settings or (service.settings if service is not None else Settings())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loading = None if service is not None else asyncio.create_task(_load(app, settings))
        try:
            yield
        finally:
            if loading is not None:
                # The load runs in a worker thread and cannot be interrupted: wait for it, then close what it opened.
                with contextlib.suppress(Exception):
                    await loading
                if app.state.service is not None:
                    app.state.service.close()
            app.state.service = None

    app = FastAPI(
        title="viqa",
        version=__version__,
        summary="Vietnamese semantic question answering over news articles.",
        description=DESCRIPTION,
        lifespan=lifespan,
        generate_unique_id_function=lambda route: route.name,
        responses={422: ERROR_RESPONSES[422]},
    )
    app.state.settings = settings
    app.state.service = service
    app.state.not_ready_reason = "the model and index are still loading; retry in a few seconds"
    app.state.write_lock = asyncio.Lock()
    app.state.metrics = Metrics(lambda: app.state.service)
    install_error_handlers(app)
    # The last added runs first: security headers wrap the 413s and CORS preflights too, and the metrics wrap all.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:  # no CORS headers at all unless origins are configured
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type"],
        )
    app.add_middleware(SecurityHeaders)
    # Outermost: every request is counted and timed, those the middlewares above answer themselves included.
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    app.include_router(health.router)
    app.include_router(ask.router, responses={k: ERROR_RESPONSES[k] for k in (413, 503)})
    app.include_router(articles.router, responses={k: ERROR_RESPONSES[k] for k in (413, 503)})
    app.include_router(stats.router, responses={503: ERROR_RESPONSES[503]})
    app.include_router(web.router)
    app.include_router(metrics.router)
    return app
