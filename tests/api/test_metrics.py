"""GET /metrics through the real server: requests per route template, the stages of a question, the index's size;
one registry per app."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import SimpleNamespace

import httpx
import prometheus_client
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from qa.api import create_app
from qa.api.metrics import STAGE_BUCKETS, UNMATCHED, IndexCollector, JobsCollector, Metrics
from qa.jobs import STATES, NewArticle
from qa.timing import STAGES
from tests.api.conftest import live_server
from tests.api.test_jobs import article, fake_service

SEED_ID = "002_793d685470df229a"
ARTICLE_ID = "test-metrics-cau-giay"
ARTICLE = {
    "id": ARTICLE_ID,
    "title": "Cầu đi bộ qua sông Tô Lịch khánh thành",
    "body": "Sáng 9/7, UBND quận Cầu Giấy tổ chức lễ khánh thành cây cầu đi bộ bắc qua sông Tô Lịch. "
    "Cây cầu dài 45 mét, rộng 3 mét, được xây dựng trong 6 tháng với tổng vốn 12 tỷ đồng.",
}
QUESTION = {"question": "Quận Nam Từ Liêm có bao nhiêu đảng viên?", "top_k": 2}

Labels = frozenset[tuple[str, str]]


def samples(text: str, name: str) -> dict[Labels, float]:
    """The values of the samples called `name` in an exposition, by their labels."""
    return {
        frozenset(s.labels.items()): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def labels(**values: str) -> Labels:
    return frozenset(values.items())


# `live_server` asks /readyz once before it hands the server over (the service is loaded: the first answer is 200).
READY_PROBE = frozenset({("method", "GET"), ("route", "/readyz"), ("status", "200")})


def scrape(http: httpx.Client) -> str:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return response.text


@pytest.fixture
def http(service) -> Iterator[httpx.Client]:
    """A server of its own over the shared service, so its metrics count this test's requests only."""
    with live_server(create_app(service=service)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def test_requests_are_counted_per_route_template_method_and_status(http):
    for _ in range(3):
        assert http.post("/v1/ask", json=QUESTION).status_code == 200
    assert http.post("/v1/ask/batch", json={"questions": ["Cầu Giấy", "dang vien"]}).status_code == 200
    assert http.post("/v1/ask", json={"question": ""}).status_code == 422
    assert http.get(f"/v1/articles/{SEED_ID}").status_code == 200
    assert http.get("/v1/articles/002_another_id").status_code == 404
    assert http.get("/v1/articles/no-such-article").status_code == 404
    try:
        assert http.post("/v1/articles", json={"articles": [ARTICLE]}).status_code == 200
    finally:
        assert http.delete(f"/v1/articles/{ARTICLE_ID}").status_code == 200
    assert http.get("/no/such/page-1").status_code == 404
    assert http.get("/no/such/page-2").status_code == 404
    assert http.request("PROPFIND", "/v1/ask").status_code == 405  # a method of WebDAV's: not one of ours

    text = scrape(http)
    counts = samples(text, "viqa_http_requests_total")
    assert counts == {
        labels(method="POST", route="/v1/ask", status="200"): 3,
        labels(method="POST", route="/v1/ask/batch", status="200"): 1,
        labels(method="POST", route="/v1/ask", status="422"): 1,
        labels(method="GET", route="/v1/articles/{article_id}", status="200"): 1,
        labels(method="GET", route="/v1/articles/{article_id}", status="404"): 2,
        labels(method="POST", route="/v1/articles", status="200"): 1,
        labels(method="DELETE", route="/v1/articles/{article_id}", status="200"): 1,
        labels(method="GET", route=UNMATCHED, status="404"): 2,  # one series for every unknown path
        labels(method="other", route="/v1/ask", status="405"): 1,
        READY_PROBE: 1,
    }
    assert "page-1" not in text and "no-such-article" not in text and "PROPFIND" not in text
    durations = samples(text, "viqa_http_request_duration_seconds_count")
    assert durations == counts, "one latency observation per request, under the same labels"


def test_each_stage_of_a_question_is_a_histogram(http):
    asks = [("/v1/ask", QUESTION)] * 2 + [("/v1/ask/batch", {"questions": ["Cầu Giấy", "dang vien", "Đống Đa"]})]
    for path, body in asks:
        assert http.post(path, json=body).status_code == 200
    assert http.post("/v1/ask", json={"question": "?!"}).status_code == 422  # refused before the read path

    text = scrape(http)
    counts = samples(text, "viqa_question_stage_duration_seconds_count")
    # One observation per ask request and stage (a batch's questions together); the seeds' service is hybrid.
    assert counts == {labels(stage=stage): len(asks) for stage in STAGES}
    buckets = samples(text, "viqa_question_stage_duration_seconds_bucket")
    for stage in STAGES:
        row = [buckets[labels(stage=stage, le=str(le))] for le in STAGE_BUCKETS] + [
            buckets[labels(stage=stage, le="+Inf")]
        ]
        assert row == sorted(row) and row[-1] == len(asks), (stage, row)
    # The stages happen inside the ask requests: together they take no longer than those requests did.
    stage_seconds = samples(text, "viqa_question_stage_duration_seconds_sum")
    request_seconds = samples(text, "viqa_http_request_duration_seconds_sum")
    asked = sum(v for k, v in request_seconds.items() if dict(k)["route"].startswith("/v1/ask"))
    assert 0 < sum(stage_seconds.values()) <= asked


def test_a_failing_request_counts_as_the_500_it_got_and_its_failing_stage_as_observed(http, service, monkeypatch):
    def broken_search(*args: object, **kwargs: object) -> None:
        raise RuntimeError("the vector index broke")

    monkeypatch.setattr(service.store, "search", broken_search)
    # uvicorn drops the connection after an unhandled error's 500 (qa.api.errors): the scrape takes a new one.
    assert http.post("/v1/ask", json=QUESTION, headers={"Connection": "close"}).status_code == 500
    text = scrape(http)
    assert samples(text, "viqa_http_requests_total")[labels(method="POST", route="/v1/ask", status="500")] == 1
    counts = samples(text, "viqa_question_stage_duration_seconds_count")
    # restore and encode ran, dense failed (and is timed all the same), nothing after it ran.
    assert counts == {labels(stage=stage): int(stage in ("restore", "encode", "dense")) for stage in STAGES}


def test_index_gauges_are_the_store_manifest(http, service):
    def index_gauges() -> dict[str, float]:
        text = scrape(http)
        return {
            name: samples(text, f"viqa_index_{name}")[frozenset()] for name in ("articles", "passages", "generation")
        }

    def manifest() -> dict[str, float]:
        m = service.store.manifest()
        return {"articles": m.articles, "passages": m.passages, "generation": m.generation}

    before = index_gauges()
    assert before == manifest() and before["articles"] == 5
    try:
        assert http.post("/v1/articles", json={"articles": [ARTICLE]}).status_code == 200
        written = index_gauges()
        assert written == manifest()
        assert written["articles"] == 6 and written["passages"] > before["passages"]
        assert written["generation"] > before["generation"]
    finally:
        assert http.delete(f"/v1/articles/{ARTICLE_ID}").status_code == 200
    after = index_gauges()
    assert after == manifest() and after["articles"] == 5 and after["generation"] > written["generation"]


def test_two_apps_in_one_process_keep_their_own_counts(service):
    with (
        live_server(create_app(service=service)) as first,
        live_server(create_app(service=service)) as second,
        httpx.Client(base_url=first) as a,
        httpx.Client(base_url=second) as b,
    ):
        assert a.get("/healthz").status_code == b.get("/readyz").status_code == 200
        assert a.get("/healthz").status_code == 200
        assert samples(scrape(a), "viqa_http_requests_total") == {
            labels(method="GET", route="/healthz", status="200"): 2,
            READY_PROBE: 1,
        }
        assert samples(scrape(b), "viqa_http_requests_total") == {READY_PROBE: 2}
    assert b"viqa_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY)


def test_metrics_are_outside_the_schema_and_speak_openmetrics(http, service):
    assert "/metrics" not in create_app(service=service).openapi()["paths"]
    response = http.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    assert response.text.endswith("# EOF\n") and "viqa_index_passages" in response.text
    assert "process_resident_memory_bytes" in response.text, "the process's own figures, for sizing"


def test_stage_seconds_land_in_their_buckets():
    metrics = Metrics(lambda: None)
    for stage, seconds in [("encode", 0.003), ("encode", 0.025), ("dense", 0.0001)]:
        metrics.observe(stage, seconds)  # type: ignore[arg-type]
    body, _ = metrics.exposition(None)
    buckets = samples(body.decode(), "viqa_question_stage_duration_seconds_bucket")
    encode = {le: buckets[labels(stage="encode", le=le)] for le in ("0.0025", "0.005", "0.02", "0.03", "+Inf")}
    assert encode == {"0.0025": 0, "0.005": 1, "0.02": 1, "0.03": 2, "+Inf": 2}
    assert buckets[labels(stage="dense", le="0.0005")] == 1 and buckets[labels(stage="lexical", le="+Inf")] == 0
    assert "viqa_index_articles" not in body.decode(), "no index gauges while the service loads"


def test_an_unreachable_database_leaves_the_index_out_of_the_scrape():
    """The scrape still answers (the process is up) without the index gauges; any other failure is a bug, raised."""

    def collector(manifest: Callable[[], object]) -> IndexCollector:
        service = SimpleNamespace(store=SimpleNamespace(manifest=manifest))
        return IndexCollector(lambda: service)  # type: ignore[arg-type, return-value]

    def down() -> None:
        raise sa.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))

    def broken() -> None:
        raise ValueError("a bug")

    assert list(collector(down).collect()) == []
    with pytest.raises(ValueError, match="a bug"):
        list(collector(broken).collect())


def test_jobs_gauges_are_the_job_table(tmp_path):
    """Jobs by state, every state present; a running job's articles done out of total, gone once it ended."""
    service = fake_service(tmp_path)
    try:
        collector = JobsCollector(lambda: service)

        def gauges() -> dict[str, dict[Labels, float]]:
            families = {f.name: f for f in collector.collect()}
            return {name: {frozenset(s.labels.items()): s.value for s in f.samples} for name, f in families.items()}

        assert gauges()["viqa_jobs"] == {labels(state=state): 0 for state in STATES}
        records = [article(n, prefix="metrics") for n in range(5)]
        first = service.jobs.submit([NewArticle(r["id"], r, passages=1) for r in records])
        second = service.jobs.submit([NewArticle(r["id"], r, passages=1) for r in records[:2]])
        claimed = service.jobs.claim("test-owner")
        assert claimed is not None and claimed.id == first
        service.jobs.mark(first, "test-owner", done={0: 1, 1: 1}, failed={2: "refused"})
        now = gauges()
        assert now["viqa_jobs"] == {labels(state=s): {"queued": 1, "running": 1}.get(s, 0) for s in STATES}
        assert now["viqa_job_articles_done"] == {labels(job=first): 3}
        assert now["viqa_job_articles_total"] == {labels(job=first): 5}
        assert service.jobs.finish(first, "test-owner", "done")
        ended = gauges()
        assert ended["viqa_jobs"] == {labels(state=s): {"queued": 1, "done": 1}.get(s, 0) for s in STATES}
        assert ended["viqa_job_articles_done"] == {} and ended["viqa_job_articles_total"] == {}
        assert second != first
    finally:
        service.close()


def test_jobs_gauges_are_in_the_scrape(http):
    text = scrape(http)
    assert set(samples(text, "viqa_jobs")) == {labels(state=state) for state in STATES}
