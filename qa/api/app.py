"""FastAPI app factory; the lifespan loads the service (model + index) once per process."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from qa import __version__
from qa.api.errors import install_error_handlers
from qa.api.routes import ask, health, web
from qa.config import Settings
from qa.service import Service

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None, *, service: Service | None = None) -> FastAPI:
    """Build the app. Pass `service` to serve an already-loaded one (tests, embedding in another process)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = service is None
        app.state.service = service or await run_in_threadpool(Service.load, settings or Settings())
        try:
            yield
        finally:
            if owned:
                app.state.service.close()
            app.state.service = None

    app = FastAPI(
        title="viqa",
        version=__version__,
        summary="Vietnamese semantic question answering over news articles.",
        lifespan=lifespan,
    )
    app.state.service = None
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(ask.router)
    app.include_router(web.router)
    return app
