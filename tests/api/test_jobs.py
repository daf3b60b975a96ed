"""Long writes as jobs through the API (a real server over a service with the hashing test encoder): 202 and
`Location`, progress to done, per-article errors, the synchronous threshold, and a cancel that keeps exactly the
committed batches."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from qa import jobs as jq
from qa.api import create_app
from qa.cli import main
from qa.client import AsyncClient, Client, JobFailed, NotFoundError
from qa.config import Settings
from qa.schemas import SYNC_ARTICLES, IndexedArticles, JobStatus
from qa.service import Service
from tests.fakes import HashingEncoder
from tests.servers import live_server, wait_for

GUARD = 120.0  # seconds: a hang guard while polling, never what decides a test


def article(n: int, prefix: str = "job", **extra: str) -> dict[str, str]:
    body = f"Bài {n} kể về cầu Nhật Tân ở Hà Nội. Cầu dài {1000 + n} mét và có năm nhịp dây văng."
    return {"id": f"{prefix}-{n}", "title": f"Bài số {n} về cầu", "body": body, **extra}


def fake_service(tmp_path: Path, encoder: HashingEncoder | None = None) -> Service:
    settings = Settings(data_dir=tmp_path / "data", seeds=tmp_path / "no-seeds", models_dir=tmp_path / "models")
    return Service.load(settings, encoder=encoder or HashingEncoder())


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Service]]:
    service = fake_service(tmp_path)
    try:
        with live_server(create_app(service=service)) as url:
            yield url, service
    finally:
        service.close()


def poll(url: str, until: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """GET the job at `url` until `until(status)` holds; every status seen, in order."""
    seen: list[dict[str, Any]] = []

    def check() -> bool:
        r = httpx.get(url, timeout=30)
        assert r.status_code == 200, r.text
        seen.append(r.json())
        return until(seen[-1])

    wait_for(check, what=f"the job at {url}", guard=GUARD)
    return seen


def ended(status: dict[str, Any]) -> bool:
    return status["state"] in ("done", "failed", "cancelled")


def test_a_large_write_is_a_job_that_runs_to_done(served):
    url, service = served
    r = httpx.post(f"{url}/v1/articles", json={"articles": [article(n) for n in range(300)]}, timeout=60)
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] in ("queued", "running") and job["articles_total"] == 300 and job["passages_total"] >= 300

    seen = poll(url + r.headers["Location"], ended)
    done = [s["articles_done"] for s in seen]
    assert done == sorted(done), "progress went backwards"
    last = seen[-1]
    assert last["state"] == "done" and last["message"].startswith("done: 300 of 300")
    assert (last["articles_done"], last["articles_failed"], last["errors"]) == (300, 0, [])
    assert last["passages_done"] == last["passages_total"] and last["eta_seconds"] == 0
    assert last["rate"] > 0 and last["finished_at"] is not None
    assert httpx.get(f"{url}/v1/articles", params={"limit": 1}).json()["count"] == 300
    assert httpx.get(f"{url}/v1/articles/job-299").json()["passages"] >= 1


def test_wait_false_makes_a_small_write_a_job_and_wait_true_keeps_a_large_one_synchronous(served):
    url, _ = served
    r = httpx.post(f"{url}/v1/articles", params={"wait": "false"}, json={"articles": [article(0, "small")]})
    assert r.status_code == 202, r.text
    assert poll(f"{url}{r.headers['Location']}", ended)[-1]["state"] == "done"

    many = [article(n, "sync") for n in range(SYNC_ARTICLES + 5)]
    r = httpx.post(f"{url}/v1/articles", params={"wait": "true"}, json={"articles": many}, timeout=60)
    assert r.status_code == 200 and r.json()["count"] == SYNC_ARTICLES + 5, r.text
    assert "Location" not in r.headers

    r = httpx.post(f"{url}/v1/articles", json={"articles": many[:SYNC_ARTICLES]})
    assert r.status_code == 200, "up to the threshold a write stays synchronous"


def test_one_bad_article_is_reported_and_the_others_are_indexed(served):
    url, _ = served
    articles = [article(n, "mixed") for n in range(30)]
    articles[4]["published_at"] = "hôm qua"
    articles[17]["id"] = "mixed..17"
    r = httpx.post(f"{url}/v1/articles", json={"articles": articles}, timeout=60)
    assert r.status_code == 202, r.text
    last = poll(f"{url}{r.headers['Location']}", ended)[-1]
    assert (last["state"], last["articles_done"], last["articles_failed"]) == ("done", 28, 2)
    assert [(e["position"], e["id"]) for e in last["errors"]] == [(4, "mixed-4"), (17, "mixed..17")]
    assert "published_at" in last["errors"][0]["message"] and "'..'" in last["errors"][1]["message"]
    assert httpx.get(f"{url}/v1/articles/mixed-4").status_code == 404
    assert httpx.get(f"{url}/v1/articles/mixed-5").status_code == 200


def test_a_job_refuses_repeated_ids_at_once(served):
    url, _ = served
    r = httpx.post(f"{url}/v1/articles", json={"articles": [article(1)] * (SYNC_ARTICLES + 1)})
    assert r.status_code == 422 and "repeated" in r.json()["error"]["message"]


def test_an_unknown_job_is_404(served):
    url, _ = served
    assert httpx.get(f"{url}/v1/jobs/nope").status_code == 404
    assert httpx.delete(f"{url}/v1/jobs/nope").status_code == 404


class GatedEncoder(HashingEncoder):
    """Holds the batch that encodes `marker` until `release` is set (the job is then mid-batch)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker
        self.holding = threading.Event()
        self.release = threading.Event()

    def encode_passages(self, texts, *, batch_size=32, show_progress=False):  # type: ignore[no-untyped-def]
        if any(self.marker in t for t in texts):
            self.holding.set()
            assert self.release.wait(GUARD), "never released"
        return super().encode_passages(texts, batch_size=batch_size)


def test_cancel_keeps_exactly_the_committed_articles_and_says_how_many(tmp_path):
    encoder = GatedEncoder("Bài số 9 về cầu")  # in the second batch
    service = fake_service(tmp_path, encoder)
    try:
        with live_server(create_app(service=service)) as url:
            r = httpx.post(f"{url}/v1/articles", json={"articles": [article(n) for n in range(60)]}, timeout=60)
            assert r.status_code == 202, r.text
            location = f"{url}{r.headers['Location']}"
            wait_for(encoder.holding.is_set, what="the second batch encoding", guard=GUARD)
            assert httpx.get(location).json()["articles_done"] == jq.BATCH_ARTICLES

            answers: list[httpx.Response] = []
            cancel = threading.Thread(target=lambda: answers.append(httpx.delete(location, timeout=60)))
            cancel.start()
            poll(location, lambda s: s["cancel_requested"])
            encoder.release.set()  # the batch in progress commits; no other one starts
            cancel.join(timeout=GUARD)

            [answer] = answers
            assert answer.status_code == 200, answer.text
            status = answer.json()
            kept = 2 * jq.BATCH_ARTICLES
            assert (status["state"], status["articles_done"]) == ("cancelled", kept)
            assert status["message"].startswith(f"cancelled: {kept} of 60 articles indexed")
            ids = {a["id"] for a in httpx.get(f"{url}/v1/articles", params={"limit": 100}).json()["data"]}
            assert ids == {f"job-{n}" for n in range(kept)}
            assert httpx.delete(location).json()["state"] == "cancelled"  # a second cancel changes nothing
    finally:
        encoder.release.set()
        service.close()


# --- the client ----------------------------------------------------------------------------------


def test_the_client_waits_for_a_job_with_progress(served):
    url, _ = served
    seen: list[JobStatus] = []
    with Client(url) as qa:
        final = qa.add_articles([article(n, "client") for n in range(40)], progress=seen.append)
        assert isinstance(final, JobStatus) and final.state == "done" and final.articles_done == 40
        assert seen[-1] == final and [s.articles_done for s in seen] == sorted(s.articles_done for s in seen)

        small = qa.add_articles([article(0, "later")], wait=False)
        assert isinstance(small, JobStatus) and small.articles_total == 1
        wait_for(lambda: qa.job(small.id).state == "done", what="the small job", guard=GUARD)
        assert qa.cancel_job(small.id).state == "done"  # ended already: unchanged
        with pytest.raises(NotFoundError):
            qa.job("nope")
        assert isinstance(qa.add_articles([article(1, "sync")]), IndexedArticles)


def _job_answers(states: list[str]) -> httpx.MockTransport:
    """A server whose write is a job that goes through `states` (one per GET), the last with one failed article."""
    answers = iter(states)

    def status(state: str) -> dict[str, Any]:
        failed = state in ("cancelled", "failed")
        return {
            "id": "j1", "state": state, "articles_total": 30, "articles_done": 8 if failed else 0,
            "articles_failed": int(failed), "passages_total": 30, "passages_done": 8 if failed else 0, "rate": None,
            "eta_seconds": None, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z",
            "finished_at": None, "cancel_requested": state == "cancelled", "error": None,
            "errors": [{"position": 3, "id": "a-3", "message": "bad date"}] if failed else [],
            "message": f"{state}: 8 of 30 articles indexed",
        }  # fmt: skip

    def handle(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(202, json=status("queued"), headers={"Location": "/v1/jobs/j1"})
        assert request.url.path == "/v1/jobs/j1"
        return httpx.Response(200, json=status(next(answers)))

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("end", ["cancelled", "failed"])
def test_the_client_raises_when_a_job_ends_without_being_done(monkeypatch, end):
    monkeypatch.setattr(Client, "_sleep", staticmethod(lambda seconds: None))
    seen: list[str] = []
    with Client(transport=_job_answers(["running", end])) as qa, pytest.raises(JobFailed) as caught:
        qa.add_articles([article(n) for n in range(30)], progress=lambda s: seen.append(s.state))
    assert seen == ["queued", "running", end]
    assert caught.value.job.articles_done == 8 and "a-3: bad date" in str(caught.value)


@pytest.mark.anyio
async def test_the_async_client_waits_for_a_job(monkeypatch):
    async def no_wait(seconds: float) -> None:
        pass

    monkeypatch.setattr(AsyncClient, "_sleep", staticmethod(no_wait))
    seen: list[str] = []
    async with AsyncClient(transport=_job_answers(["running", "cancelled"])) as qa:
        with pytest.raises(JobFailed):
            await qa.add_articles([article(0)], progress=lambda s: seen.append(s.state))
        assert seen == ["queued", "running", "cancelled"]
        assert (await qa.add_articles([article(0)], wait=False)).state == "queued"  # type: ignore[union-attr]


# --- the qa command ------------------------------------------------------------------------------


def test_qa_add_sends_files_as_a_job_with_a_progress_bar(served, tmp_path, capsys):
    url, _ = served
    corpus = tmp_path / "articles.jsonl"
    records = [article(n, "cli", published_at="09/07/2020 14:02", source="VnExpress") for n in range(35)]
    records[2]["id"] = "cli..2"  # read fine from the file, refused by the server: reported, the others added
    corpus.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")

    assert main(["add", str(corpus), "--server", url]) == 1
    out, err = capsys.readouterr()
    assert "added 34 articles" in out and "1 failed" in out
    assert "failed: cli..2:" in err and "indexing" in err  # the bar is drawn on stderr
    got = httpx.get(f"{url}/v1/articles/cli-7").json()
    assert got["source"] == "VnExpress" and got["published_at"].startswith("2020-07-09T14:02")

    small = tmp_path / "one.jsonl"
    small.write_text(json.dumps(article(0, "one")), encoding="utf-8")
    assert main(["add", str(small), "--server", url]) == 0
    assert "added 1 articles" in capsys.readouterr().out


# --- replicas ------------------------------------------------------------------------------------


def test_with_replicas_on_postgresql_any_replica_answers_for_a_job(tmp_path, postgres_url):
    from tests.postgres import fresh_database

    with fresh_database(postgres_url) as database_url:
        replicas = []
        try:
            for name in ("a", "b"):
                settings = Settings(data_dir=tmp_path / name, seeds=tmp_path / "no-seeds", database_url=database_url)
                replicas.append(Service.load(settings, encoder=HashingEncoder()))
            with live_server(create_app(service=replicas[0])) as a, live_server(create_app(service=replicas[1])) as b:
                r = httpx.post(f"{a}/v1/articles", json={"articles": [article(n, "pg") for n in range(50)]}, timeout=60)
                assert r.status_code == 202, r.text
                last = poll(b + r.headers["Location"], ended)[-1]  # asked of the replica that did not take it
                assert (last["state"], last["articles_done"]) == ("done", 50)
                for url in (a, b):
                    assert httpx.get(f"{url}/v1/articles", params={"limit": 1}).json()["count"] == 50
        finally:
            for service in replicas:
                service.close()
