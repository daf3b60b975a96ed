"""The jobs of one index as kept in the database: submitted, read and cancelled by any replica; claimed under a lease,
renewed, marked article by article, released or finished by the one running it (`qa.jobs.runner`)."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qa import database as db

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
STATES = (QUEUED, RUNNING, DONE, FAILED, CANCELLED)
FINAL = frozenset({DONE, FAILED, CANCELLED})
PENDING = "pending"  # an article's status before it is done or failed

# A replica that stops renewing its lease for this long is taken for dead, and its job for another's to finish.
LEASE_SECONDS = 30.0

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
