"""The app's Prometheus metrics, in a registry of its own: requests per route, the stages of a question, the
index's size and the ingestion jobs (both read from the database at scrape time). `docs/operations.md` lists them
for operators."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qa.api.errors import unavailable
from qa.service import Service
from qa.timing import STAGES, Stage

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"  # the route label of every path no route serves: one series, whatever the path
OTHER_METHOD = "other"  # the method label of any method outside METHODS (a client can send any token)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# A question takes tens of milliseconds (finer buckets there, for its quantiles), a write of many articles can
# take minutes (encoding).
REQUEST_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
# A stage takes from well under a millisecond (a flat FAISS search) to seconds (a remote engine under load).
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, *REQUEST_BUCKETS[: REQUEST_BUCKETS.index(5.0) + 1])


class ScrapeCollector(Collector):
    """Figures read from the database when scraped (nothing while loading). A database that does not answer leaves
    them out of that scrape, logged, rather than failing the whole scrape: the process is up, and its other metrics
    still say so."""

    what = "figures"

    def __init__(self, service: Callable[[], Service | None]) -> None:
        self._service = service

    def describe(self) -> Iterable[Metric]:
        return self.families()  # the names only: registering reads no database

    def collect(self) -> Iterable[Metric]:
        service = self._service()
        if service is None:
            return []
        try:
            return self.read(service)
        except Exception as exc:
            reason = unavailable(exc)
            if reason is None:
                raise
            log.warning("%s metrics left out of this scrape: %s", self.what, reason)
            return []

    def families(self) -> list[GaugeMetricFamily]:
        raise NotImplementedError

    def read(self, service: Service) -> list[GaugeMetricFamily]:
        raise NotImplementedError


class IndexCollector(ScrapeCollector):
    """The index's size and generation, read from the store's manifest."""

    what = "index"

    def families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("viqa_index_articles", "Articles in the index."),
            GaugeMetricFamily("viqa_index_passages", "Passages in the index."),
            GaugeMetricFamily("viqa_index_generation", "The index's generation: one more with every committed write."),
        ]

    def read(self, service: Service) -> list[GaugeMetricFamily]:
        manifest = service.store.manifest()
        articles, passages, generation = self.families()
        articles.add_metric([], manifest.articles)
        passages.add_metric([], manifest.passages)
        generation.add_metric([], manifest.generation)
        return [articles, passages, generation]


class JobsCollector(ScrapeCollector):
    """Background jobs by state (every state, 0 if none) and each running job's articles done out of total, from
    the job table: every replica of one database reports the same figures."""

    what = "jobs"

    def families(self) -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("viqa_jobs", "Ingestion jobs in each state.", labels=["state"]),
            GaugeMetricFamily("viqa_job_articles_done", "A running job's articles done (or failed).", labels=["job"]),
            GaugeMetricFamily("viqa_job_articles_total", "A running job's articles in all.", labels=["job"]),
        ]

    def read(self, service: Service) -> list[GaugeMetricFamily]:
        counts = service.jobs.counts()
        by_state, done, total = self.families()
        for state, n in counts.by_state.items():
            by_state.add_metric([state], n)
        for job in counts.running:
            done.add_metric([job.id], job.articles_done)
            total.add_metric([job.id], job.articles_total)
        return [by_state, done, total]


class Metrics:
    """One app's metrics and the registry they live in: each app has its own, so apps built in one process (the
    tests build many) neither clash nor share counts. It is the `StageObserver` the read path reports to."""

    def __init__(self, service: Callable[[], Service | None]) -> None:
        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")
        self.requests = Counter("viqa_http_requests", "HTTP requests answered.", labels, registry=self.registry)
        self.request_seconds = Histogram(
            "viqa_http_request_duration_seconds",
            "Seconds from a request's arrival until its response was sent.",
            labels,
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "viqa_question_stage_duration_seconds",
            "Seconds one ask request (all its questions together) spent in a stage of the read path.",
            ("stage",),
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        for stage in STAGES:  # every stage from the first scrape on, at zero until a question goes through it
            self.stage_seconds.labels(stage)
        self.registry.register(IndexCollector(service))
        self.registry.register(JobsCollector(service))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)

    def observe(self, stage: Stage, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_seconds.labels(method, route, str(status)).observe(seconds)

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The registry's samples in the format `accept` asks for (OpenMetrics or Prometheus text), its media type."""
        encode, media_type = choose_encoder(accept or "")
        return encode(self.registry), media_type


def route_template(scope: Scope) -> str:
    """The path template of the route that served `scope` (`/v1/articles/{article_id}`, never the raw path), also
    when it refused the method (405), as the router records it in the scope; `UNMATCHED` when no route did."""
    return str(getattr(scope.get("route"), "path_format", None) or UNMATCHED)


class RequestMetrics:
    """ASGI middleware: count and time every HTTP request by method, route template and status.

    The route is the one the router chose (read once the app is done), so a request answered before routing
    (413 by `BodySizeLimit`, a CORS preflight) counts as `UNMATCHED`, like an unknown path; its status tells
    them apart. An exception that escapes every handler is answered 500 by Starlette's outermost middleware,
    after this one: it counts as 500."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"] if scope["method"] in METHODS else OTHER_METHOD
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            self.metrics.request(method, route_template(scope), status, time.perf_counter() - started)
