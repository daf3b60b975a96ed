"""Long writes as jobs kept in the database: `JobQueue` (`queue.py`) submits, reads and cancels them (any replica
can), and `JobRunner` (`runner.py`), a background thread per replica, claims one job at a time under a lease and
indexes it batch by batch, giving way to questions."""

from qa.jobs.queue import (
    CANCELLED,
    DONE,
    FAILED,
    FINAL,
    LEASE_SECONDS,
    PENDING,
    QUEUED,
    RUNNING,
    STATES,
    ArticleFailure,
    Job,
    JobCounts,
    JobQueue,
    NewArticle,
    RunningJob,
    replica_id,
)
from qa.jobs.runner import BATCH_ARTICLES, MAX_ATTEMPTS, GivingWay, JobRunner, wait_for_questions

__all__ = [
    "BATCH_ARTICLES",
    "CANCELLED",
    "DONE",
    "FAILED",
    "FINAL",
    "LEASE_SECONDS",
    "MAX_ATTEMPTS",
    "PENDING",
    "QUEUED",
    "RUNNING",
    "STATES",
    "ArticleFailure",
    "GivingWay",
    "Job",
    "JobCounts",
    "JobQueue",
    "JobRunner",
    "NewArticle",
    "RunningJob",
    "replica_id",
    "wait_for_questions",
]
