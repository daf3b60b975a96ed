"""The job runner: a background thread per replica that claims one job at a time under a lease and indexes its
articles batch by batch, giving way to questions."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa

from qa.corpus import ArticleError, article_from_record
from qa.encoders import Encoder
from qa.indexing import API, Indexer
from qa.jobs.queue import CANCELLED, DONE, FAILED, LEASE_SECONDS, JobQueue, replica_id

log = logging.getLogger(__name__)

# Claims of one job before it is reported failed instead of run again (a job that kills its runner every time).
MAX_ATTEMPTS = 3
# Articles a batch: one store transaction each, and the granularity of progress, cancelling and questions' turns.
BATCH_ARTICLES = 8


def wait_for_questions(
    questions_waiting: Callable[[], bool], max_seconds: float, stop: threading.Event | None = None
) -> None:
    """Wait while questions are being answered, at most `max_seconds` (a steady stream of questions must not starve
    a job), or until `stop` is set."""
    deadline = time.monotonic() + max_seconds
    while questions_waiting() and time.monotonic() < deadline and not (stop is not None and stop.is_set()):
        time.sleep(0.005)


class GivingWay:
    """An encoder for jobs: before each forward pass it lets the questions being answered finish (waiting at most
    `max_wait` seconds, so a steady stream of questions cannot starve the job). A job's batch is many passes of
    `Indexer.batch_size` texts, so a question waits for one pass at most, not for the whole batch."""

    def __init__(self, encoder: Encoder, questions_waiting: Callable[[], bool], *, max_wait: float = 2.0) -> None:
        self.encoder = encoder
        self.name = encoder.name
        self.dim = encoder.dim
        self.questions_waiting = questions_waiting
        self.max_wait = max_wait

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(texts)

    def encode_passages(self, texts: Sequence[str], *, batch_size: int = 32, show_progress: bool = False) -> np.ndarray:
        wait_for_questions(self.questions_waiting, self.max_wait)
        return self.encoder.encode_passages(texts, batch_size=batch_size, show_progress=show_progress)


class JobRunner:
    """A background thread that runs this replica's share of the jobs, one at a time, until `stop()`.

    A job is claimed under a lease that a heartbeat renews while it runs; its articles go through the `Indexer` in
    batches of `batch_articles`, each batch one store transaction, marked done after the commit. An article the
    indexer refuses is retried alone and, failing again, recorded failed with its error; the others go on. Between
    batches the runner checks for a cancel, and gives way while `questions_waiting()` (questions first).
    """

    def __init__(
        self,
        queue: JobQueue,
        indexer: Indexer,
        *,
        owner: str | None = None,
        lease: float = LEASE_SECONDS,
        poll_seconds: float = 1.0,
        batch_articles: int = BATCH_ARTICLES,
        questions_waiting: Callable[[], bool] = lambda: False,
        max_yield_seconds: float = 2.0,
    ) -> None:
        self.queue = queue
        self.indexer = indexer
        self.owner = owner or replica_id()
        self.lease = lease
        self.poll_seconds = poll_seconds
        self.batch_articles = batch_articles
        self.questions_waiting = questions_waiting
        self.max_yield_seconds = max_yield_seconds
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="qa-job-runner", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look for a job now (one was just submitted here) instead of at the next poll."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress (its articles are committed and marked); the job goes back to the
        queue, for this replica's next start or another replica to resume."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("the job runner did not stop within %.0f s", timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ran = self.run_once()
            except Exception:
                log.exception("job runner: claiming or running a job failed; trying again in %.0f s", self.poll_seconds)
                ran = False
            if not ran:
                self._wake.wait(self.poll_seconds)
                self._wake.clear()

    def run_once(self) -> bool:
        """Claim one job and run it until it ends, this runner is stopped, or the job is no longer its own;
        whether there was a job to claim."""
        job = self.queue.claim(self.owner, self.lease)
        if job is None:
            return False
        log.info(
            "job %s: claimed (attempt %d), %d/%d articles done",
            job.id,
            job.attempts,
            job.articles_done,
            job.articles_total,
        )
        if job.cancel_requested:
            self.queue.finish(job.id, self.owner, CANCELLED)
            return True
        if job.attempts > MAX_ATTEMPTS:
            self.queue.finish(job.id, self.owner, FAILED, f"stopped after {MAX_ATTEMPTS} attempts that did not finish")
            return True
        heartbeat = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(job.id, heartbeat), name="qa-job-lease", daemon=True)
        renewer.start()
        try:
            self._run(job.id)
        except Exception as exc:
            log.exception("job %s failed", job.id)
            self.queue.finish(job.id, self.owner, FAILED, f"{type(exc).__name__}: {exc}")
        finally:
            heartbeat.set()
            renewer.join()
        return True

    def _renew(self, job_id: str, done: threading.Event) -> None:
        while not done.wait(self.lease / 3):
            try:
                if not self.queue.renew(job_id, self.owner, self.lease):
                    return
            except Exception:  # the database did not answer: the next renewal (or batch) tries again
                log.warning("job %s: renewing the lease failed", job_id, exc_info=True)

    def _run(self, job_id: str) -> None:
        while True:
            if self._stop.is_set():
                self.queue.release(job_id, self.owner)
                log.info("job %s: released at shutdown, to be resumed", job_id)
                return
            if self.queue.cancel_requested(job_id):
                self.queue.finish(job_id, self.owner, CANCELLED)
                log.info("job %s: cancelled", job_id)
                return
            batch = self.queue.pending(job_id, self.batch_articles)
            if not batch:
                self.queue.finish(job_id, self.owner, DONE)
                log.info("job %s: done", job_id)
                return
            done, failed = self._index(batch)
            if not self.queue.mark(job_id, self.owner, done=done, failed=failed, lease=self.lease):
                log.warning("job %s: no longer this replica's (its lease ran out); leaving it", job_id)
                return
            self._give_way()

    def _index(self, batch: Sequence[tuple[int, dict[str, Any]]]) -> tuple[dict[int, int], dict[int, str]]:
        """Index a batch in one transaction; if that fails, each article alone, so one bad article fails alone."""
        failed: dict[int, str] = {}
        articles = {}
        for position, record in batch:
            try:
                articles[position] = article_from_record(record)
            except ArticleError as exc:
                failed[position] = str(exc)
        try:
            # An article stored with the same content is not encoded again (a batch redone after a crash, above all).
            statuses = self.indexer.statuses(list(articles.values()))
            unchanged = sorted(i for i, status in statuses.items() if status == "unchanged")
            written = [a for a in articles.values() if statuses[a.id] != "unchanged"]
            counts = self.indexer.add(written, origin=API, commit_every=2**62)
            counts.update(self.indexer.store.passage_counts(unchanged) if unchanged else {})
        except sa.exc.SQLAlchemyError:  # the database, not an article: the job stops, to be resumed
            raise
        except Exception as exc:
            if len(articles) <= 1:
                failed.update({p: f"{type(exc).__name__}: {exc}" for p in articles})
                return {}, failed
            done: dict[int, int] = {}
            for position, record in batch:
                if position in articles:
                    one_done, one_failed = self._index([(position, record)])
                    done.update(one_done)
                    failed.update(one_failed)
            return done, failed
        return {p: counts.get(a.id, 0) for p, a in articles.items()}, failed

    def _give_way(self) -> None:
        """Let questions waiting on the CPU go first (bounded: a steady stream of questions must not starve the
        job), then let any other thread run."""
        wait_for_questions(self.questions_waiting, self.max_yield_seconds, self._stop)
        time.sleep(0)
