"""The job queue and runner over a real store (SQLite and PostgreSQL): claims are exclusive, a dead owner's job is
taken over, articles fail one by one, a cancel keeps exactly the committed batches."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa

from qa import jobs as jq
from qa.indexing import Indexer
from qa.jobs import JobQueue, JobRunner, NewArticle
from tests.fakes import SMALL_CHUNKING, HashingEncoder


def record(n: int, **extra: str) -> dict[str, str]:
    body = " ".join(f"Câu {i} của bài {n} nói về cầu Nhật Tân ở Hà Nội." for i in range(6))
    return {"id": f"job-{n}", "title": f"Bài số {n}", "body": body, **extra}


def submit(queue: JobQueue, records: list[dict[str, str]]) -> str:
    return queue.submit([NewArticle(r["id"], r, passages=1) for r in records])


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FailingOn(HashingEncoder):
    """Refuses any batch holding a text with `marker` (an article the model cannot take)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def encode_passages(self, texts, *, batch_size=32, show_progress=False):  # type: ignore[no-untyped-def]
        if any(self.marker in t for t in texts):
            raise ValueError(f"cannot encode {self.marker}")
        return super().encode_passages(texts, batch_size=batch_size)


def runner(store, queue: JobQueue, encoder=None, **options) -> JobRunner:  # type: ignore[no-untyped-def]
    indexer = Indexer(store, encoder or HashingEncoder(), chunking=SMALL_CHUNKING)
    return JobRunner(queue, indexer, **options)


@pytest.mark.every_database
def test_a_job_runs_to_done_with_its_bad_articles_reported(store, database_url):
    queue = JobQueue.beside(store.engine, store.path)
    records = [record(n) for n in range(20)]
    records[3] = record(3, published_at="hôm qua")  # the record is refused when the runner reads it
    records[11]["body"] += " HỎNG"  # the encoder refuses it
    refused_at_submit = NewArticle("job-x", {"id": "job-x"}, error="body: missing")
    job_id = queue.submit([*(NewArticle(r["id"], r, passages=2) for r in records), refused_at_submit])
    assert queue.get(job_id).state == jq.QUEUED

    assert runner(store, queue, FailingOn("HỎNG"), batch_articles=4).run_once()

    job = queue.get(job_id)
    assert job.state == jq.DONE and job.finished_at is not None
    assert (job.articles_total, job.articles_done, job.articles_failed) == (21, 18, 3)
    assert [(f.position, f.article_id) for f in job.failures] == [(3, "job-3"), (11, "job-11"), (20, "job-x")]
    assert "published_at" in job.failures[0].message and "HỎNG" in job.failures[1].message
    indexed = {r["id"] for n, r in enumerate(records) if n not in (3, 11)}
    assert set(store.fingerprints()) == indexed
    assert job.passages_done == sum(store.passage_counts(sorted(indexed)).values()) == job.passages_total
    assert job.seconds_left(0.0) == 0.0
    assert not runner(store, queue).run_once()  # nothing left to claim


@pytest.mark.every_database
def test_a_claim_is_exclusive_and_a_dead_owners_job_is_taken_over(store, database_url):
    clock = Clock()
    queue = JobQueue.beside(store.engine, store.path, clock=clock)
    job_id = submit(queue, [record(n) for n in range(10)])
    claimed = queue.claim("replica-a", lease=30)
    assert claimed is not None and claimed.owner == "replica-a" and claimed.attempts == 1
    assert queue.claim("replica-b", lease=30) is None  # the lease holds
    assert queue.mark(job_id, "replica-a", done={0: 1}, failed={})  # replica-a committed one article, then died
    assert not queue.mark(job_id, "replica-b", done={1: 1}, failed={})  # not its job: nothing recorded

    clock.now += 31  # replica-a's lease ran out
    b = runner(store, queue, owner="replica-b", batch_articles=3)
    assert b.run_once()
    job = queue.get(job_id)
    assert (job.state, job.owner, job.attempts) == (jq.DONE, "replica-b", 2)
    # The article replica-a marked done was not written again by replica-b (it did its own 9).
    assert job.articles_done == 10 and len(store.fingerprints()) == 9
    assert not queue.renew(job_id, "replica-a") and not queue.finish(job_id, "replica-a", jq.FAILED)


@pytest.mark.every_database
def test_cancel_keeps_exactly_the_committed_batches(store, database_url):
    queue = JobQueue.beside(store.engine, store.path)
    job_id = submit(queue, [record(n) for n in range(12)])
    batches = []

    def cancel_after_the_second_batch() -> bool:  # called by the runner after each batch
        batches.append(queue.get(job_id).articles_done)
        if len(batches) == 2:
            queue.cancel(job_id)
        return False

    assert runner(store, queue, batch_articles=4, questions_waiting=cancel_after_the_second_batch).run_once()
    job = queue.get(job_id)
    assert batches == [4, 8]
    assert job.state == jq.CANCELLED and job.cancel_requested and job.articles_done == 8
    assert sorted(store.fingerprints()) == sorted(f"job-{n}" for n in range(8))


def test_a_queued_job_is_cancelled_at_once_and_a_final_one_stays(store):
    queue = JobQueue.beside(store.engine, store.path)
    job_id = submit(queue, [record(0)])
    assert queue.cancel(job_id).state == jq.CANCELLED
    assert not runner(store, queue).run_once()
    assert store.fingerprints() == {}
    done_id = submit(queue, [record(1)])
    assert runner(store, queue).run_once()
    assert queue.cancel(done_id).state == jq.DONE
    assert queue.cancel("nope") is None and queue.get("nope") is None


def test_a_job_that_keeps_crashing_is_reported_failed(store):
    clock = Clock()
    queue = JobQueue.beside(store.engine, store.path, clock=clock)
    job_id = submit(queue, [record(0)])
    for attempt in range(jq.MAX_ATTEMPTS):
        assert queue.claim(f"dead-{attempt}", lease=30) is not None
        clock.now += 31
    assert runner(store, queue).run_once()
    job = queue.get(job_id)
    assert job.state == jq.FAILED and "attempts" in (job.error or "")
    assert store.fingerprints() == {}


def test_counts_for_metrics(store):
    clock = Clock()
    queue = JobQueue.beside(store.engine, store.path, clock=clock)
    running = submit(queue, [record(n) for n in range(5)])
    submit(queue, [record(9)])
    clock.now += 1
    assert queue.claim("a") is not None and queue.claim("a") is not None  # both claimed: the older first
    queue.mark(running, "a", done={0: 1, 1: 1}, failed={2: "bad"})
    counts = queue.counts()
    assert counts.by_state == {"queued": 0, "running": 2, "done": 0, "failed": 0, "cancelled": 0}
    assert counts.running[0] == jq.RunningJob(running, 3, 5)


def test_the_runner_thread_stops_cleanly(store):
    queue = JobQueue.beside(store.engine, store.path)
    r = runner(store, queue, poll_seconds=0.05)
    r.start()
    job_id = submit(queue, [record(n) for n in range(3)])
    r.wake()
    deadline = 600  # polls of 0.05 s: a hang guard, not what decides the outcome
    while queue.get(job_id).state != jq.DONE and deadline:
        deadline -= 1
        r._stop.wait(0.05)
    r.stop()
    assert queue.get(job_id).state == jq.DONE and r._thread is not None and not r._thread.is_alive()


@pytest.mark.every_database
def test_replicas_claiming_at_once_never_share_a_job(store, database_url):
    queue = JobQueue.beside(store.engine, store.path)
    job_ids = {submit(queue, [record(n)]) for n in range(12)}
    claims: dict[str, list[str]] = {f"replica-{r}": [] for r in range(4)}
    start = threading.Barrier(len(claims))

    def claim_all(owner: str) -> None:
        start.wait()
        while (job := queue.claim(owner, lease=60)) is not None:
            claims[owner].append(job.id)

    threads = [threading.Thread(target=claim_all, args=(owner,)) for owner in claims]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    claimed = [job_id for ids in claims.values() for job_id in ids]
    assert sorted(claimed) == sorted(job_ids), "a job was claimed twice, or not at all"
    assert all(queue.get(job_id).owner == owner for owner, ids in claims.items() for job_id in ids)


def test_a_jobs_encoder_lets_questions_finish_before_each_pass():
    answering = iter([True, True, True])  # three looks at a question being answered, then none

    def questions_waiting() -> bool:
        return next(answering, False)

    encoder = jq.GivingWay(HashingEncoder(), questions_waiting, max_wait=60)
    vectors = encoder.encode_passages(["cầu Nhật Tân"])
    assert next(answering, "spent") == "spent", "it encoded before the questions were done"
    assert vectors.shape == (1, encoder.dim) and encoder.name == HashingEncoder().name
    # A steady stream of questions cannot hold the job for longer than max_wait.
    assert jq.GivingWay(HashingEncoder(), lambda: True, max_wait=0).encode_passages(["a"]).shape == (1, 64)


def test_a_runner_stopping_gives_its_job_back_to_the_queue(store):
    queue = JobQueue.beside(store.engine, store.path)
    job_id = submit(queue, [record(n) for n in range(12)])
    stopping = runner(store, queue, batch_articles=4)
    stopping.questions_waiting = lambda: stopping._stop.set() or False  # shut down after the first batch
    assert stopping.run_once()
    job = queue.get(job_id)
    assert (job.state, job.owner, job.attempts, job.articles_done) == (jq.QUEUED, None, 0, 4)
    assert runner(store, queue, batch_articles=4).run_once()  # resumed at once, no lease to wait for
    job = queue.get(job_id)
    assert (job.state, job.attempts, job.articles_done) == (jq.DONE, 1, 12)


def test_a_batch_redone_after_a_crash_encodes_nothing_again(store):
    clock = Clock()
    queue = JobQueue.beside(store.engine, store.path, clock=clock)
    records = [record(n) for n in range(6)]
    job_id = submit(queue, records)
    counting = FailingOn("never")
    dead = runner(store, queue, counting, owner="dead", batch_articles=6)
    assert queue.claim("dead", lease=30) is not None
    dead._index(queue.pending(job_id, 6))  # the store committed the batch, then the process died before the mark
    encoded = counting.calls
    clock.now += 31
    assert runner(store, queue, counting, batch_articles=6).run_once()
    job = queue.get(job_id)
    assert (job.state, job.articles_done) == (jq.DONE, 6) and counting.calls == encoded
    assert job.passages_done == sum(store.passage_counts([r["id"] for r in records]).values()) > 0


@pytest.mark.every_database
def test_jobs_live_beside_an_embedded_store_and_in_a_database_server(store, database_url):
    queue = JobQueue.beside(store.engine, store.path)
    submit(queue, [record(0)])
    in_store = sa.inspect(store.engine).has_table("jobs")
    if database_url is None:  # SQLite: a file of their own, so job bookkeeping never locks the store's writer
        assert not in_store and (store.path.parent / f"{store.path.name}.jobs.sqlite").is_file()
    else:  # any replica reaches them
        assert in_store and queue.engine is store.engine
    queue.close()
