"""Typed Python client for the viqa HTTP API: `Client` (blocking) and `AsyncClient`, same methods.

Needs only httpx and pydantic; imports nothing of the server (no torch, faiss or fastapi). With `qa serve`
running::

    from qa.client import Client

    with Client("http://127.0.0.1:8000") as qa:
        answer = qa.ask("Quận Nam Từ Liêm có bao nhiêu đảng viên?", top_k=3)
        for hit in answer.hits:
            print(f"{hit.score:.3f}  {hit.article.title}")
            for span in hit.highlights:
                print("   ", hit.text[span.start : span.end])

A question typed without its tone marks is read with them restored: `answer.understood_as` says how ("quan nam tu
liem" → "quận Nam Từ Liêm"), or is None when it was read as typed; `restore=False` asks exactly as typed.

Errors raise `QAError` subclasses carrying the server's `code`, `message` and `detail`. Filters are checked
here before sending (`qa.schemas.Filters`, the server's own rules): a bad date raises the `BadRequest` the
server would answer (422, same code, message and detail) without sending anything.

Retries never add load to a busy server. A call (read or write alike) is sent again only when it cannot have
reached the server, or when the server refused it without doing anything:

- a connect error or connect timeout: after a short backoff (0.2 s, 0.4 s, ... at most 2 s);
- a 503 with `Retry-After` (seconds or an HTTP date; the server sends it while loading): after that long, unless
  it is more than 30 s (`MAX_RETRY_AFTER`): then the call fails at once with `ServiceUnavailable`.

At most `retries` times (default 2). Anything else, a read timeout above all, is not retried: the server may
still be working on the request, and sending it again would only pile more work on it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypedDict, TypeVar, Unpack
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from qa import __version__
from qa.schemas import (
    ArticleDetail,
    ArticleIn,
    ArticleList,
    AskBatchResponse,
    AskResponse,
    DeletedArticle,
    Filters,
    Health,
    IndexedArticles,
    JobStatus,
    Stats,
)

__all__ = [
    "AsyncClient",
    "BadRequest",
    "Client",
    "JobFailed",
    "NotFoundError",
    "PayloadTooLarge",
    "QAConnectionError",
    "QAError",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
]

DEFAULT_URL = "http://127.0.0.1:8000"
MAX_RETRY_AFTER = 30.0  # seconds: a server asking for a longer wait gets an error raised at once instead
JOB_POLL_SECONDS = 0.5  # how often `add_articles` asks for a job's status while it waits for it
M = TypeVar("M", bound=BaseModel)
Http = TypeVar("Http", httpx.Client, httpx.AsyncClient)
Transport = TypeVar("Transport", httpx.BaseTransport, httpx.AsyncBaseTransport)
Outcome = httpx.Response | httpx.TransportError


# --- errors ----------------------------------------------------------------------------------------


class QAError(Exception):
    """Any failure of a call; `status`, `code`, `message` and `detail` come from the server when it answered."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, detail: object | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.detail = detail

    def __str__(self) -> str:
        prefix = " ".join(str(x) for x in (self.status, self.code) if x is not None)
        return f"{prefix}: {self.message}" if prefix else self.message


class BadRequest(QAError):
    """422 (or 400): the request was invalid; `message` says what to fix."""


class Unauthorized(QAError):
    """401: a write without the right API key."""


class NotFoundError(QAError):
    """404: no such article (or route)."""


class PayloadTooLarge(QAError):
    """413: the request body is larger than the server accepts."""


class ServiceUnavailable(QAError):
    """503: the server is still loading its model and index (raised once the retries it allows are spent)."""


class ServerError(QAError):
    """Any other 5xx."""


class QAConnectionError(QAError):
    """The server could not be reached (after the retries) or the call failed on the way (timed out, say)."""


class JobFailed(QAError):
    """A write running as a job ended failed or cancelled; `job` is its last status (what was kept, the errors)."""

    def __init__(self, job: JobStatus) -> None:
        errors = "; ".join(f"{e.id}: {e.message}" for e in job.errors[:5])
        super().__init__(job.message + (f" (errors: {errors})" if errors else ""), code=job.state, detail=job)
        self.job = job


_ERRORS_BY_STATUS: dict[int, type[QAError]] = {
    400: BadRequest,
    401: Unauthorized,
    404: NotFoundError,
    413: PayloadTooLarge,
    422: BadRequest,
    503: ServiceUnavailable,
}


def _error_from(response: httpx.Response) -> QAError:
    status = response.status_code
    cls = _ERRORS_BY_STATUS.get(status) or (ServerError if status >= 500 else QAError)
    try:
        error = response.json()["error"]
        return cls(str(error["message"]), status=status, code=error.get("code"), detail=error.get("detail"))
    except (ValueError, KeyError, TypeError):  # not our error shape (a proxy in between, say)
        return cls(response.text[:500] or response.reason_phrase, status=status)


# --- requests, shared by both clients --------------------------------------------------------------


class AskOptions(TypedDict, total=False):
    """Optional search settings of `ask` and `ask_batch` (see the API docs for each)."""

    offset: int
    filters: Filters | Mapping[str, Any]
    min_score: float
    one_per_article: bool
    highlight: bool
    restore: bool  # false: read the question exactly as typed (no tone marks restored; see `understood_as`)


@dataclass(frozen=True, slots=True)
class _Call(Generic[M]):
    method: str
    path: str
    model: type[M]
    json: Any = None
    params: dict[str, Any] | None = None
    accepted: type[BaseModel] | None = None  # the model of a 202 answer, when the call may get one

    def result(self, outcome: Outcome, attempts: int) -> M:
        if isinstance(outcome, httpx.TransportError):
            raise _give_up(self, outcome, attempts) from outcome
        if outcome.is_error:
            raise _error_from(outcome)
        model = self.accepted if self.accepted is not None and outcome.status_code == 202 else self.model
        try:
            return model.model_validate_json(outcome.content)  # type: ignore[return-value]  # M, or `accepted`
        except ValidationError as exc:  # a server of another version, or not viqa at all
            raise QAError(
                f"unexpected response to {self.method} {self.path}: {exc}", status=outcome.status_code
            ) from exc


def _invalid(exc: ValidationError, *where: str) -> BadRequest:
    """The `BadRequest` the server would answer for these errors (422, its message and detail), made locally."""
    errors = [
        {"loc": ["body", *where, *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors(include_url=False)
    ]
    message = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors[:5])
    return BadRequest(message, status=422, code="invalid_request", detail=errors)


def _filters(filters: Filters | Mapping[str, Any]) -> dict[str, Any]:
    """Check `filters` by the server's rules, and send them as given: dates as typed, date objects in ISO 8601."""
    if isinstance(filters, Filters):
        return filters.model_dump(mode="json", exclude_none=True)
    try:
        Filters.model_validate(filters)
    except ValidationError as exc:
        raise _invalid(exc, "filters") from None
    return {k: v.isoformat() if isinstance(v, date) else v for k, v in filters.items() if v is not None}


def _options(top_k: int, options: AskOptions) -> dict[str, Any]:
    payload: dict[str, Any] = {"top_k": top_k, **options}
    if payload.get("filters") is not None:
        payload["filters"] = _filters(payload["filters"])
    return payload


def _ask(question: str, top_k: int, options: AskOptions) -> _Call[AskResponse]:
    return _Call("POST", "/v1/ask", AskResponse, json={"question": question, **_options(top_k, options)})


def _ask_batch(questions: Iterable[str], top_k: int, options: AskOptions) -> _Call[AskBatchResponse]:
    payload = {"questions": list(questions), **_options(top_k, options)}
    return _Call("POST", "/v1/ask/batch", AskBatchResponse, json=payload)


def _add_articles(articles: Iterable[ArticleIn | Mapping[str, Any]], wait: bool) -> _Call[Any]:
    """The write: IndexedArticles when the server writes at once, JobStatus when it makes a job (202)."""
    records = [a.model_dump(mode="json", exclude_none=True) if isinstance(a, BaseModel) else dict(a) for a in articles]
    params = None if wait else {"wait": "false"}
    return _Call("POST", "/v1/articles", IndexedArticles, json={"articles": records}, params=params, accepted=JobStatus)


def _job(job_id: str) -> _Call[JobStatus]:
    return _Call("GET", f"/v1/jobs/{quote(job_id, safe='')}", JobStatus)


def _cancel_job(job_id: str) -> _Call[JobStatus]:
    return _Call("DELETE", f"/v1/jobs/{quote(job_id, safe='')}", JobStatus)


def _finished(job: JobStatus) -> JobStatus | None:
    """`job` once it ended done; None while it runs; raises `JobFailed` if it ended failed or cancelled."""
    if job.state == "done":
        return job
    if job.state in ("failed", "cancelled"):
        raise JobFailed(job)
    return None


def _article_path(article_id: str) -> str:
    return f"/v1/articles/{quote(article_id, safe='')}"


def _delete_article(article_id: str) -> _Call[DeletedArticle]:
    return _Call("DELETE", _article_path(article_id), DeletedArticle)


def _list_articles(offset: int, limit: int) -> _Call[ArticleList]:
    return _Call("GET", "/v1/articles", ArticleList, params={"offset": offset, "limit": limit})


def _get_article(article_id: str) -> _Call[ArticleDetail]:
    return _Call("GET", _article_path(article_id), ArticleDetail)


_HEALTH = _Call("GET", "/healthz", Health)
_READY = _Call("GET", "/readyz", Health)
_STATS = _Call("GET", "/v1/stats", Stats)


def _build(http: httpx.Client | httpx.AsyncClient, call: _Call[Any]) -> httpx.Request:
    try:
        return http.build_request(call.method, call.path, json=call.json, params=call.params)
    except (ValueError, TypeError) as exc:  # NaN, lone surrogates, objects JSON cannot hold
        raise BadRequest(f"cannot encode the request as JSON: {exc}") from exc


def _headers(api_key: str | None) -> dict[str, str]:
    headers = {"User-Agent": f"viqa-client/{__version__}", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _backoff(attempt: int) -> float:
    return min(0.2 * 2**attempt, 2.0)


def _retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (it holds seconds or an HTTP date); None if absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, by RFC 5322
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _retry_delay(outcome: Outcome, attempt: int, retries: int, now: datetime | None = None) -> float | None:
    """After attempt number `attempt` (0 for the first) ended in `outcome`: how many seconds to wait before
    sending the request again, or None to stop there (see the module docstring for why these cases only)."""
    if attempt >= retries:
        return None
    if isinstance(outcome, httpx.ConnectError | httpx.ConnectTimeout):  # never reached the server
        return _backoff(attempt)
    if isinstance(outcome, httpx.Response) and outcome.status_code == 503:  # refused before doing anything
        wait = _retry_after(outcome.headers.get("Retry-After"), now)
        return wait if wait is not None and wait <= MAX_RETRY_AFTER else None
    return None


def _not_ready(timeout: float, last: QAError, exited: bool) -> QAConnectionError:
    why = "the server process exited" if exited else f"not ready after {timeout:g} s"
    return QAConnectionError(f"{why} (last answer: {last})")


def _give_up(call: _Call[Any], exc: httpx.TransportError, attempts: int) -> QAConnectionError:
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
    tries = f" after {attempts} attempts" if attempts > 1 else ""
    reached = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
    note = " (not sent again: the server may have received it)" if reached else ""
    return QAConnectionError(f"{call.method} {call.path} {what}{tries}{note}: {exc!r}")


# --- clients ---------------------------------------------------------------------------------------


# An idle connection is dropped here before the server drops it (uvicorn: after 5 s, httpx's own default too): a
# request sent on a connection the server is closing would be reset, and is not sent again (see the module doc).
_LIMITS = httpx.Limits(keepalive_expiry=2.0)


class _ClientBase(Generic[Http, Transport]):
    """What both clients share: where the server is, how long to wait, the API key and the retry budget."""

    _http: Http

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        *,
        timeout: float = 60.0,
        api_key: str | None = None,
        retries: int = 2,
        transport: Transport | None = None,
    ) -> None:
        self.retries = retries
        self._http = self._open(
            base_url=base_url, timeout=timeout, headers=_headers(api_key), transport=transport, limits=_LIMITS
        )

    def _open(self, **settings: Any) -> Http:
        raise NotImplementedError


class Client(_ClientBase[httpx.Client, httpx.BaseTransport]):
    """Blocking client. Use as a context manager, or call `close()`.

    `retries` is how many times a call may be sent again (see the module docstring for when); `transport`
    lets you plug in any httpx transport (e.g. `httpx.MockTransport` in tests).

        >>> with Client("http://127.0.0.1:8000", api_key=None) as qa:  # doctest: +SKIP
        ...     qa.stats().articles
        5
    """

    _sleep: Callable[[float], object] = staticmethod(time.sleep)

    def _open(self, **settings: Any) -> httpx.Client:
        return httpx.Client(**settings)

    def _send(self, call: _Call[M], retries: int | None = None) -> M:
        request, attempt = _build(self._http, call), 0
        while True:
            try:
                outcome: Outcome = self._http.send(request)
            except httpx.TransportError as exc:
                outcome = exc
            delay = _retry_delay(outcome, attempt, self.retries if retries is None else retries)
            if delay is None:
                return call.result(outcome, attempt + 1)
            self._sleep(delay)
            attempt += 1

    def ask(self, question: str, *, top_k: int = 5, **options: Unpack[AskOptions]) -> AskResponse:
        """The `top_k` passages that best answer `question`, with their articles and highlighted sentences."""
        return self._send(_ask(question, top_k, options))

    def ask_batch(self, questions: Iterable[str], *, top_k: int = 5, **options: Unpack[AskOptions]) -> AskBatchResponse:
        """Up to 32 questions in one call (encoded together); `results` follow the order of `questions`."""
        return self._send(_ask_batch(questions, top_k, options))

    def add_articles(
        self,
        articles: Iterable[ArticleIn | Mapping[str, Any]],
        *,
        wait: bool = True,
        progress: Callable[[JobStatus], object] | None = None,
    ) -> IndexedArticles | JobStatus:
        """Add or replace (by id) articles, each with its `title` and `body` or its web page's `html` (`ArticleIn` or a
        dict).

        A small write (up to `qa.schemas.SYNC_ARTICLES` articles) returns each one's passage count. A larger one
        runs as a job on the server: with `wait` this polls it, calling `progress` with each status, and returns
        its final status once done (articles that failed on their own are in its `errors`), or raises `JobFailed`
        if it failed or was cancelled. `wait=False` makes any write a job and returns its first status at once.
        """
        result = self._send(_add_articles(articles, wait))
        if isinstance(result, IndexedArticles) or not wait:
            return result
        while True:
            if progress is not None:
                progress(result)
            if (finished := _finished(result)) is not None:
                return finished
            self._sleep(JOB_POLL_SECONDS)
            result = self.job(result.id)

    def job(self, job_id: str) -> JobStatus:
        """A job's status; raises `NotFoundError` for an unknown id."""
        return self._send(_job(job_id))

    def cancel_job(self, job_id: str) -> JobStatus:
        """Cancel a job (what it committed stays; its status says how many); a job already ended is unchanged."""
        return self._send(_cancel_job(job_id))

    def delete_article(self, article_id: str) -> DeletedArticle:
        """Delete an article; raises `NotFoundError` for an unknown id."""
        return self._send(_delete_article(article_id))

    def list_articles(self, *, offset: int = 0, limit: int = 20) -> ArticleList:
        """One page of articles (ordered by id); `count` is the total."""
        return self._send(_list_articles(offset, limit))

    def get_article(self, article_id: str) -> ArticleDetail:
        """One article with its text and passage ids; raises `NotFoundError` for an unknown id."""
        return self._send(_get_article(article_id))

    def health(self) -> Health:
        """Whether the process is up (`status == "ok"`)."""
        return self._send(_HEALTH)

    def ready(self) -> Health:
        """`status == "ready"` once the model and index are loaded; raises `ServiceUnavailable` before."""
        return self._send(_READY)

    def wait_ready(
        self, timeout: float = 120.0, *, interval: float = 0.2, alive: Callable[[], bool] | None = None
    ) -> Health:
        """Poll `/readyz` until the server has loaded its model and index (a server still starting, or not
        listening yet, is waited for). Raises `QAConnectionError` after `timeout` seconds, or as soon as
        `alive()` (e.g. `lambda: process.poll() is None` for a server you started) turns False."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self._send(_READY, retries=0)  # this loop is the retrying
            except (ServiceUnavailable, QAConnectionError) as exc:
                if alive is not None and not alive():
                    raise _not_ready(timeout, exc, exited=True) from exc
                if time.monotonic() >= deadline:
                    raise _not_ready(timeout, exc, exited=False) from exc
            time.sleep(interval)

    def stats(self) -> Stats:
        """Article and passage counts, model, index kind, build and update times."""
        return self._send(_STATS)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncClient(_ClientBase[httpx.AsyncClient, httpx.AsyncBaseTransport]):
    """The same methods as `Client`, awaitable. Use `async with`, or call `await aclose()`.

    >>> async with AsyncClient("http://127.0.0.1:8000") as qa:  # doctest: +SKIP
    ...     answer = await qa.ask("Quận Nam Từ Liêm có bao nhiêu đảng viên?")
    """

    _sleep: Callable[[float], Awaitable[object]] = staticmethod(asyncio.sleep)

    def _open(self, **settings: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(**settings)

    async def _send(self, call: _Call[M], retries: int | None = None) -> M:
        request, attempt = _build(self._http, call), 0
        while True:
            try:
                outcome: Outcome = await self._http.send(request)
            except httpx.TransportError as exc:
                outcome = exc
            delay = _retry_delay(outcome, attempt, self.retries if retries is None else retries)
            if delay is None:
                return call.result(outcome, attempt + 1)
            await self._sleep(delay)
            attempt += 1

    async def ask(self, question: str, *, top_k: int = 5, **options: Unpack[AskOptions]) -> AskResponse:
        """See `Client.ask`."""
        return await self._send(_ask(question, top_k, options))

    async def ask_batch(
        self, questions: Iterable[str], *, top_k: int = 5, **options: Unpack[AskOptions]
    ) -> AskBatchResponse:
        """See `Client.ask_batch`."""
        return await self._send(_ask_batch(questions, top_k, options))

    async def add_articles(
        self,
        articles: Iterable[ArticleIn | Mapping[str, Any]],
        *,
        wait: bool = True,
        progress: Callable[[JobStatus], object] | None = None,
    ) -> IndexedArticles | JobStatus:
        """See `Client.add_articles`."""
        result = await self._send(_add_articles(articles, wait))
        if isinstance(result, IndexedArticles) or not wait:
            return result
        while True:
            if progress is not None:
                progress(result)
            if (finished := _finished(result)) is not None:
                return finished
            await self._sleep(JOB_POLL_SECONDS)
            result = await self.job(result.id)

    async def job(self, job_id: str) -> JobStatus:
        """See `Client.job`."""
        return await self._send(_job(job_id))

    async def cancel_job(self, job_id: str) -> JobStatus:
        """See `Client.cancel_job`."""
        return await self._send(_cancel_job(job_id))

    async def delete_article(self, article_id: str) -> DeletedArticle:
        """See `Client.delete_article`."""
        return await self._send(_delete_article(article_id))

    async def list_articles(self, *, offset: int = 0, limit: int = 20) -> ArticleList:
        """See `Client.list_articles`."""
        return await self._send(_list_articles(offset, limit))

    async def get_article(self, article_id: str) -> ArticleDetail:
        """See `Client.get_article`."""
        return await self._send(_get_article(article_id))

    async def health(self) -> Health:
        """See `Client.health`."""
        return await self._send(_HEALTH)

    async def ready(self) -> Health:
        """See `Client.ready`."""
        return await self._send(_READY)

    async def wait_ready(
        self, timeout: float = 120.0, *, interval: float = 0.2, alive: Callable[[], bool] | None = None
    ) -> Health:
        """See `Client.wait_ready`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return await self._send(_READY, retries=0)  # this loop is the retrying
            except (ServiceUnavailable, QAConnectionError) as exc:
                if alive is not None and not alive():
                    raise _not_ready(timeout, exc, exited=True) from exc
                if time.monotonic() >= deadline:
                    raise _not_ready(timeout, exc, exited=False) from exc
            await asyncio.sleep(interval)

    async def stats(self) -> Stats:
        """See `Client.stats`."""
        return await self._send(_STATS)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
