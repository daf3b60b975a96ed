"""kill -9 of a real `qa serve` in the middle of a job: at the next start the job resumes (once the dead process's
lease has run out) and ends done, with every article of it indexed exactly once and none half-written.

tests/test_crash_api.py does the same for a synchronous `POST /v1/articles`.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from qa import database as db
from qa.store import Store
from tests.conftest import REPO_ROOT
from tests.servers import start_qa_serve

ARTICLES = 48
POLL_SECONDS = 0.5  # between status reads: polling harder would take CPU from the job it waits for
GUARD = 900.0  # seconds: a hang guard on a busy 2-core machine, never what decides the test


def body(n: int) -> str:
    return " ".join(
        f"Đoạn {i} của bài {n}: cầu Nhật Tân dài {1000 + i} mét, nối Tây Hồ với Đông Anh ở Hà Nội." for i in range(10)
    )


def check_job_articles(path: Path) -> None:
    """Each job article once, whole: its passages cover its body in order, and the search index holds them all."""
    store = Store.open(path)
    try:
        assert store.manifest().passages == store.index.ntotal
        counts = store.passage_counts([f"job-{n}" for n in range(ARTICLES)])
        for n in range(ARTICLES):
            article = store.article(f"job-{n}")
            assert article is not None and article.body == body(n), f"job-{n} missing or altered"
            passages = store.passages_of(article.id)
            assert passages and [p.ordinal for p in passages] == list(range(len(passages))) == list(
                range(counts[article.id])
            )
            assert all(article.body[p.start : p.end] == p.text for p in passages)
        with store.engine.connect() as conn:
            ids = conn.scalars(sa.select(db.passages.c.id).where(db.passages.c.article_id.like("job-%"))).all()
        assert len(ids) == len(set(ids)) == sum(counts.values()), "a passage was written twice"
    finally:
        store.close()


def poll(condition: Callable[[], bool], *, what: str, alive: Callable[[], bool] = lambda: True) -> None:
    deadline = time.monotonic() + GUARD
    while not condition():
        assert alive(), f"{what}: the server exited"
        assert time.monotonic() < deadline, f"{what}: still not there after {GUARD:.0f} s"
        time.sleep(POLL_SECONDS)


@pytest.mark.slow
def test_kill_9_during_a_job_resumes_at_the_next_start(tmp_path, default_model_dir):
    seeds = tmp_path / "seeds"
    seeds.mkdir()
    shutil.copy(REPO_ROOT / "seeds" / "004_883b030afed6ad88.txt", seeds)
    data, log = tmp_path / "data", tmp_path / "serve.log"
    env = {
        "QA_DATA_DIR": str(data),
        "QA_MODELS_DIR": str(default_model_dir.parent),
        "QA_SEEDS": str(seeds),
        "QA_JOB_LEASE_SECONDS": "3",  # the dead process's job is free 3 s after its last renewal
    }
    articles = [{"id": f"job-{n}", "title": f"Bài {n} về cầu Nhật Tân", "body": body(n)} for n in range(ARTICLES)]
    proc, url = start_qa_serve(env, log)
    try:
        r = httpx.post(f"{url}/v1/articles", json={"articles": articles}, timeout=120)
        assert r.status_code == 202, r.text
        location = url + r.headers["Location"]
        # Kill once some batches are committed: the kill lands inside a batch or between two, and the assertions
        # below hold either way.
        poll(lambda: httpx.get(location, timeout=30).json()["articles_done"] >= 16, what="two batches")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

        engine = db.create_engine(f"sqlite:///{data / 'default.jobs.sqlite'}")  # JobQueue.beside the index folder
        with engine.connect() as conn:
            job = conn.execute(sa.select(db.jobs)).mappings().one()
            done = conn.scalar(sa.select(sa.func.count()).where(db.job_articles.c.status == "done"))
        engine.dispose()
        assert job["state"] == "running" and 16 <= done < ARTICLES, (job["state"], done)

        proc, url = start_qa_serve(env, log)
        status: dict[str, object] = {}

        def ended() -> bool:
            status.update(httpx.get(url + r.headers["Location"], timeout=30).json())
            return status["state"] in ("done", "failed", "cancelled")

        poll(ended, what="the resumed job", alive=lambda: proc.poll() is None)
        assert (status["state"], status["articles_done"], status["articles_failed"]) == ("done", ARTICLES, 0), status
        proc.terminate()
        proc.wait(timeout=30)
        check_job_articles(data / "default")
        print(f"\nkill -9 during a job: {done} of {ARTICLES} articles marked done at the kill, then resumed to done")
    finally:
        proc.kill()
        proc.wait(timeout=30)
