"""Long writes as jobs kept in the database: `JobQueue` submits, reads and cancels them (any replica can), and
`JobRunner`, a background thread per replica, claims one job at a time under a lease and indexes it batch by batch."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qa import database as db
from qa.corpus import ArticleError, article_from_record
from qa.encoders import Encoder
from qa.indexing import API, Indexer

log = logging.getLogger(__name__)

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINAL = frozenset({DONE, FAILED, CANCELLED})
PENDING = "pending"  # an article's status before it is done or failed

# A replica that stops renewing its lease for this long is taken for dead, and its job for another's to finish.
LEASE_SECONDS = 30.0
# Claims of one job before it is reported failed instead of run again (a job that kills its runner every time).
MAX_ATTEMPTS = 3
# Articles a batch: one store transaction each, and the granularity of progress, cancelling and questions' turns.
BATCH_ARTICLES = 8

_JOB = db.jobs.c
_ITEM = db.job_articles.c


@dataclass(frozen=True, slots=True)
class NewArticle:
    """One article of a job being submitted: as posted, its passage count, or why it cannot be indexed."""

    article_id: str
    record: Mapping[str, Any]
    passages: int = 0
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ArticleFailure:
    position: int
    article_id: str
    message: str


@dataclass(frozen=True, slots=True)
class Job:
    """A job as stored, with its progress counted from its articles."""

    id: str
    state: str
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None
    articles_total: int
    articles_done: int
    articles_failed: int
    passages_total: int
    passages_done: int
    owner: str | None
    lease_until: float | None
    attempts: int
    cancel_requested: bool
    error: str | None
    failures: list[ArticleFailure] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.state in FINAL

    def rate(self, now: float) -> float | None:
        """Passages indexed a second since the job started (None before it started or indexed anything)."""
        if self.started_at is None or not self.passages_done:
            return None
        end = self.finished_at or now
        return self.passages_done / max(end - self.started_at, 1e-6)

    def seconds_left(self, now: float) -> float | None:
        """At the rate so far, how long the passages left will take (0 once final; None before any rate)."""
        if self.final:
            return 0.0
        rate = self.rate(now)
        return None if rate is None else (self.passages_total - self.passages_done) / rate


@dataclass(frozen=True, slots=True)
class RunningJob:
    id: str
    articles_done: int
    articles_total: int


@dataclass(frozen=True, slots=True)
class JobCounts:
    """What a metrics collector reads: jobs by state, and the progress of each running one."""

    by_state: dict[str, int]
    running: list[RunningJob]


def replica_id() -> str:
    """This process's name as a job owner: readable in the job's status, unique across restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class JobQueue:
    """The jobs of one index: submit, read, cancel, and (for `JobRunner`) claim, renew, mark, release, finish."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time, owns_engine: bool = False) -> None:
        self.engine = engine
        self.clock = clock
        self._owns_engine = owns_engine
        with engine.begin() as conn:
            db.lock_name(conn, "create job tables")  # replicas starting at once: one creates them
            db.job_metadata.create_all(conn)

    @classmethod
    def beside(cls, store_engine: Engine, folder: Path, *, clock: Callable[[], float] = time.time) -> JobQueue:
        """The jobs of the index whose database is `store_engine` and folder `folder`: in the same database server,
        or, for an embedded SQLite store, in a SQLite file of their own beside the folder (`<folder>.jobs.sqlite`:
        a rebuild, which replaces the folder, keeps them)."""
        if store_engine.dialect.name != "sqlite":
            return cls(store_engine, clock=clock)
        path = folder.parent / f"{folder.name}.{db.JOBS_DB_FILE}"
        return cls(db.create_engine(f"sqlite:///{path}"), clock=clock, owns_engine=True)

    def close(self) -> None:
        if self._owns_engine:
            self.engine.dispose()

    # --- what the API does -----------------------------------------------------------------------
    def submit(self, articles: Sequence[NewArticle]) -> str:
        """A new queued job of `articles` (those with an `error` are recorded failed at once); its id."""
        job_id = uuid.uuid4().hex
        now = self.clock()
        rows = [
            {
                "job_id": job_id,
                "position": n,
                "article_id": a.article_id,
                "record": json.dumps(a.record, ensure_ascii=False),
                "status": PENDING if a.error is None else FAILED,
                "passages": a.passages,
                "error": a.error,
            }
            for n, a in enumerate(articles)
        ]
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(db.jobs).values(
                    id=job_id,
                    state=QUEUED,
                    created_at=now,
                    updated_at=now,
                    articles_total=len(rows),
                    passages_total=sum(a.passages for a in articles if a.error is None),
                    attempts=0,
                    cancel_requested=False,
                )
            )
            if rows:
                conn.execute(sa.insert(db.job_articles), rows)
        return job_id

    def get(self, job_id: str) -> Job | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.jobs).where(_JOB.id == job_id)).mappings().first()
            if row is None:
                return None
            counts = conn.execute(
                sa.select(_ITEM.status, sa.func.count(), sa.func.coalesce(sa.func.sum(_ITEM.passages), 0))
                .where(_ITEM.job_id == job_id)
                .group_by(_ITEM.status)
            ).all()
            failures = conn.execute(
                sa.select(_ITEM.position, _ITEM.article_id, _ITEM.error)
                .where(_ITEM.job_id == job_id, _ITEM.status == FAILED)
                .order_by(_ITEM.position)
            ).all()
        by_status = {status: (int(n), int(passages)) for status, n, passages in counts}
        return Job(
            id=row["id"],
            state=row["state"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            articles_total=row["articles_total"],
            articles_done=by_status.get(DONE, (0, 0))[0],
            articles_failed=by_status.get(FAILED, (0, 0))[0],
            passages_total=row["passages_total"],
            passages_done=by_status.get(DONE, (0, 0))[1],
            owner=row["owner"],
            lease_until=row["lease_until"],
            attempts=row["attempts"],
            cancel_requested=bool(row["cancel_requested"]),
            error=row["error"],
            failures=[ArticleFailure(p, a, e or "") for p, a, e in failures],
        )

    def cancel(self, job_id: str) -> Job | None:
        """Ask for the job to stop: a queued one is cancelled at once, a running one by its runner before its next
        batch (what was committed stays). A final job is left as it is. None for an unknown id."""
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(db.jobs)
                .where(_JOB.id == job_id, _JOB.state == QUEUED)
                .values(state=CANCELLED, cancel_requested=True, updated_at=now, finished_at=now)
            )
            conn.execute(
                sa.update(db.jobs)
                .where(_JOB.id == job_id, _JOB.state == RUNNING)
                .values(cancel_requested=True, updated_at=now)
            )
        return self.get(job_id)

    def counts(self) -> JobCounts:
        """Jobs by state (every state present, 0 if none) and, per running job, articles done out of total."""
        with self.engine.connect() as conn:
            by_state = dict.fromkeys(STATES, 0)
            for state, n in conn.execute(sa.select(_JOB.state, sa.func.count()).group_by(_JOB.state)):
                by_state[state] = int(n)
            done = (
                sa.select(sa.func.count())
                .where(_ITEM.job_id == _JOB.id, _ITEM.status != PENDING)
                .correlate(db.jobs)
                .scalar_subquery()
            )
            running = [
                RunningJob(job_id, int(n), int(total))
                for job_id, n, total in conn.execute(
                    sa.select(_JOB.id, done, _JOB.articles_total).where(_JOB.state == RUNNING).order_by(_JOB.created_at)
                )
            ]
        return JobCounts(by_state, running)

    # --- what a runner does ----------------------------------------------------------------------
    def claim(self, owner: str, lease: float = LEASE_SECONDS) -> Job | None:
        """Take the oldest queued job, or a running one whose owner's lease ran out; None when there is none.

        The claim is one conditional UPDATE: of two replicas claiming the same job, one changes the row and the
        other sees no row changed and looks again.
        """
        while True:
            now = self.clock()
            claimable = sa.or_(_JOB.state == QUEUED, sa.and_(_JOB.state == RUNNING, _JOB.lease_until < now))
            with self.engine.connect() as conn:
                job_id = conn.scalar(sa.select(_JOB.id).where(claimable).order_by(_JOB.created_at).limit(1))
            if job_id is None:
                return None
            with self.engine.begin() as conn:
                claimed = conn.execute(
                    sa.update(db.jobs)
                    .where(_JOB.id == job_id, claimable)
                    .values(
                        state=RUNNING,
                        owner=owner,
                        lease_until=now + lease,
                        attempts=_JOB.attempts + 1,
                        updated_at=now,
                        started_at=sa.func.coalesce(_JOB.started_at, now),
                    )
                ).rowcount
            if claimed:
                return self.get(job_id)

    def renew(self, job_id: str, owner: str, lease: float = LEASE_SECONDS) -> bool:
        """Extend `owner`'s lease; False when the job is no longer its own (taken over, or finished)."""
        now = self.clock()
        with self.engine.begin() as conn:
            return _update_owned(conn, job_id, owner, {"lease_until": now + lease, "updated_at": now})

    def pending(self, job_id: str, limit: int) -> list[tuple[int, dict[str, Any]]]:
        """The next `limit` articles not yet done or failed, in posted order: (position, record)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(_ITEM.position, _ITEM.record)
                .where(_ITEM.job_id == job_id, _ITEM.status == PENDING)
                .order_by(_ITEM.position)
                .limit(limit)
            ).all()
        return [(position, json.loads(record)) for position, record in rows]

    def mark(
        self,
        job_id: str,
        owner: str,
        *,
        done: Mapping[int, int],
        failed: Mapping[int, str],
        lease: float = LEASE_SECONDS,
    ) -> bool:
        """Record articles done (position → passages) and failed (position → why), and renew the lease, in one
        transaction; False (nothing recorded) when the job is no longer `owner`'s."""
        now = self.clock()
        with self.engine.begin() as conn:
            if not _update_owned(conn, job_id, owner, {"lease_until": now + lease, "updated_at": now}):
                return False
            where = (_ITEM.job_id == job_id) & (_ITEM.position == sa.bindparam("p"))
            if done:
                conn.execute(
                    sa.update(db.job_articles).where(where).values(status=DONE, passages=sa.bindparam("n")),
                    [{"p": p, "n": n} for p, n in done.items()],
                )
            if failed:
                conn.execute(
                    sa.update(db.job_articles).where(where).values(status=FAILED, error=sa.bindparam("e")),
                    [{"p": p, "e": e} for p, e in failed.items()],
                )
            if done:  # the total was counted when the job was made; an article may chunk differently now
                total = (
                    sa.select(sa.func.coalesce(sa.func.sum(_ITEM.passages), 0))
                    .where(_ITEM.job_id == job_id, _ITEM.status != FAILED)
                    .scalar_subquery()
                )
                conn.execute(sa.update(db.jobs).where(_JOB.id == job_id).values(passages_total=total))
        return True

    def cancel_requested(self, job_id: str) -> bool:
        with self.engine.connect() as conn:
            return bool(conn.scalar(sa.select(_JOB.cancel_requested).where(_JOB.id == job_id)))

    def release(self, job_id: str, owner: str) -> bool:
        """Give `owner`'s job back to the queue as it stands (a replica shutting down): the next runner to look
        resumes it at once, and the attempt does not count against it."""
        now = self.clock()
        with self.engine.begin() as conn:
            values = {"state": QUEUED, "owner": None, "lease_until": None, "attempts": _JOB.attempts - 1}
            return _update_owned(conn, job_id, owner, {**values, "updated_at": now})

    def finish(self, job_id: str, owner: str, state: str, error: str | None = None) -> bool:
        """End `owner`'s job in `state`; False when it is no longer its own."""
        now = self.clock()
        with self.engine.begin() as conn:
            values = {"state": state, "error": error, "finished_at": now, "lease_until": None}
            return _update_owned(conn, job_id, owner, {**values, "updated_at": now})


def _update_owned(conn: sa.Connection, job_id: str, owner: str, values: Mapping[str, Any]) -> bool:
    """Set `values` on the job if it is running and `owner`'s; whether it was."""
    owned = sa.update(db.jobs).where(_JOB.id == job_id, _JOB.owner == owner, _JOB.state == RUNNING)
    return bool(conn.execute(owned.values(**values)).rowcount)


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
