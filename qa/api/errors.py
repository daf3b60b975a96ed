"""One error shape for every failure: `{"error": {"code", "message", "detail"}}`, and the body size limit."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.corpus import ArticleError
from qa.schemas import ErrorResponse

log = logging.getLogger(__name__)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorResponse, "description": "Missing or wrong API key (writes, when `QA_API_KEY` is set)."},
    404: {"model": ErrorResponse, "description": "No article with this id."},
    413: {"model": ErrorResponse, "description": "The request body is larger than `QA_MAX_BODY_BYTES`."},
    422: {"model": ErrorResponse, "description": "Invalid input; `message` says what to fix."},
    503: {
        "model": ErrorResponse,
        "description": "The model and index are still loading, or the database or search engine (PostgreSQL, Milvus) "
        "did not answer (`code` backend_unavailable, `message` says which and why; the write was not committed, "
        "and sending it again is safe: a write replaces whole articles); `Retry-After` says when to try again.",
        "headers": {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}},
    },
}


class APIError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, detail: object | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class InvalidRequest(APIError):
    status = 422
    code = "invalid_request"


class Unauthorized(APIError):
    status = 401
    code = "unauthorized"


class NotFound(APIError):
    status = 404
    code = "not_found"


class NotReady(APIError):
    status = 503
    code = "not_ready"
    retry_after = 1  # seconds; sent as Retry-After: nothing was done, and qa.client sends the request again


def _printable(value: object) -> str:
    # Lone surrogates from the request (in a JSON key, say) cannot be encoded into the response.
    return str(value).encode("utf-8", "replace").decode("utf-8")


def error_response(
    status: int, code: str, message: str, detail: object | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": _printable(message), "detail": detail}}
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    return [
        {
            "loc": [p if isinstance(p, int) else _printable(p) for p in e.get("loc", ())],
            "msg": _printable(e.get("msg", "invalid")),
            "type": _printable(e.get("type", "")),
        }
        for e in exc.errors()
    ]


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for err in errors[:5]:
        loc = err["loc"][1:] if err["loc"][:1] in (["body"], ["query"], ["path"]) else err["loc"]
        where = ".".join(str(p) for p in loc) or "body"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


_HTTP_CODES = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(APIError)
    async def _api_error(_: Request, exc: APIError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if isinstance(exc, NotReady):
            headers = {"Retry-After": str(exc.retry_after)}
        return error_response(exc.status, exc.code, exc.message, exc.detail, headers)

    @app.exception_handler(ArticleError)
    async def _bad_article(_: Request, exc: ArticleError) -> JSONResponse:
        return error_response(422, "invalid_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _validation_errors(exc)
        return error_response(422, "invalid_request", _validation_message(errors), errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI could not read the body (e.g. not UTF-8): still invalid input
            return error_response(422, "invalid_request", "the request body is not valid JSON text in UTF-8")
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    async def _backend(request: Request, exc: Exception) -> JSONResponse:
        reason = unavailable(exc)
        if reason is None:
            return await _unexpected(request, exc)
        log.warning("backend unavailable: %s", reason)
        headers = {"Retry-After": str(NotReady.retry_after)}
        return error_response(503, "backend_unavailable", reason, headers=headers)

    # Their own handlers, not the catch-all below: an exception that reaches Starlette's last handler is raised
    # again after the response, and uvicorn then drops the connection, which a client reusing it sees as a reset.
    import sqlalchemy as sa

    from qa.milvus import MilvusError

    for kind in (sa.exc.DBAPIError, sa.exc.DisconnectionError, MilvusError):
        app.add_exception_handler(kind, _backend)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        reason = unavailable(exc)
        if reason is not None:
            log.warning("backend unavailable: %s", reason)
            headers = {"Retry-After": str(NotReady.retry_after)}
            return error_response(503, "backend_unavailable", reason, headers=headers)
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error; see the server log")


def unavailable(exc: BaseException) -> str | None:
    """Why a request failed when the cause is a database or search engine that did not answer (a server down,
    restarting or unreachable), in one line; None for any other failure."""
    import sqlalchemy as sa

    from qa.milvus import MilvusError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, MilvusError):
            return f"search engine unavailable: {current}"
        if isinstance(current, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            reason = " ".join(str(current.orig or current).split())[:300]
            return f"database unavailable: {reason}"
        if isinstance(current, sa.exc.DisconnectionError):
            return f"database unavailable: {current}"
        current = current.__cause__ or current.__context__
    return None


class BodySizeLimit:
    """ASGI middleware: answer 413 once a request body passes `max_bytes`.

    Checks `Content-Length` up front, and counts chunked bodies as they arrive; the body (at most
    `max_bytes`) is buffered and replayed to the app. Before answering 413 it reads and discards up to
    `DRAIN_BYTES` more of the body: closing a socket with unread data makes the kernel reset it, and a
    client still sending would then see a connection error instead of the 413. Bodies beyond that are
    cut off (the client may see the reset; the server reads no further).
    """

    DRAIN_BYTES = 16 * 1024 * 1024

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            # A client waiting for "100 Continue" has sent nothing yet: answer at once, nothing to drain.
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            await self._too_large(scope, receive, send, more_body=True, drain=not waiting)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._too_large(scope, receive, send, more_body=message.get("more_body", False))
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _too_large(
        self, scope: Scope, receive: Receive, send: Send, *, more_body: bool, drain: bool = True
    ) -> None:
        drained = 0
        while drain and more_body and drained <= self.DRAIN_BYTES:
            chunk = await receive()
            if chunk["type"] != "http.request":
                return  # the client went away: nobody to answer
            drained += len(chunk.get("body", b""))
            more_body = chunk.get("more_body", False)
        message = f"the request body is larger than {self.max_bytes} bytes; send fewer or smaller articles"
        response = error_response(413, "payload_too_large", message, {"max_bytes": self.max_bytes})
        if more_body:  # the rest of the body is still on the wire: this connection cannot be reused
            response.headers["Connection"] = "close"
        await response(scope, receive, send)
