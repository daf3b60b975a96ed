"""The jobs resource: a long write's status (`GET`), and cancelling it (`DELETE`); any replica answers for any job."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from qa.api.deps import ServiceDep, WriteAccess
from qa.api.errors import ERROR_RESPONSES, NotFound
from qa.jobs import CANCELLED, DONE, FAILED, QUEUED, Job
from qa.schemas import JobArticleError, JobStatus
from qa.service import Service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

JobId = Annotated[str, Path(description="The job's id (from the `Location` of the 202).")]

# How long `DELETE` waits for the runner to stop at the end of its batch before answering 202 (still stopping).
CANCEL_WAIT_SECONDS = 10.0


def job_path(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def wake_job_runner(request: Request) -> None:
    """Tell this replica's runner a job was just submitted (others find it at their next poll)."""
    runner = getattr(request.app.state, "job_runner", None)
    if runner is not None:
        runner.wake()


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _message(job: Job) -> str:
    done = f"{job.articles_done} of {job.articles_total} articles indexed"
    failed = f", {job.articles_failed} failed (see errors)" if job.articles_failed else ""
    if job.state == CANCELLED:
        return f"cancelled: {done}{failed}; they are kept, the other articles were not written"
    if job.state == FAILED:
        return f"failed: {job.error}; {done}{failed}, and they are kept"
    if job.state == DONE:
        return f"done: {done}{failed}"
    if job.cancel_requested:
        return f"cancelling after the batch in progress: {done} so far{failed}"
    return f"{job.state}: {done}{failed}" if job.state != QUEUED else f"queued: {job.articles_total} articles"


def status_of(job: Job, now: float | None = None) -> JobStatus:
    now = time.time() if now is None else now
    return JobStatus(
        id=job.id,
        state=job.state,  # type: ignore[arg-type]  # one of the states the schema lists
        articles_total=job.articles_total,
        articles_done=job.articles_done,
        articles_failed=job.articles_failed,
        passages_total=job.passages_total,
        passages_done=job.passages_done,
        rate=job.rate(now),
        eta_seconds=job.seconds_left(now),
        created_at=_time(job.created_at),
        updated_at=_time(job.updated_at),
        finished_at=None if job.finished_at is None else _time(job.finished_at),
        cancel_requested=job.cancel_requested,
        error=job.error,
        errors=[JobArticleError(position=f.position, id=f.article_id, message=f.message) for f in job.failures],
        message=_message(job),
    )


def job_status(service: Service, job_id: str) -> JobStatus:
    job = service.jobs.get(job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    return status_of(job)


@router.get(
    "/{job_id}",
    response_model=JobStatus,
    summary="A job's status",
    description="State, articles and passages done out of total, rate, time left, and the articles that failed.",
    responses={404: ERROR_RESPONSES[404]},
)
async def get_job(job_id: JobId, service: ServiceDep) -> JobStatus:
    return await run_in_threadpool(job_status, service, job_id)


@router.delete(
    "/{job_id}",
    response_model=JobStatus,
    summary="Cancel a job",
    description="A queued job is cancelled at once; a running one stops at the end of its batch in progress. The "
    "articles already indexed stay (`articles_done` says how many). 200 once the job has stopped (or had already "
    f"ended: its status is unchanged), 202 if it is still finishing its batch after {CANCEL_WAIT_SECONDS:g} s. Needs "
    "the API key when `QA_API_KEY` is set.",
    dependencies=[WriteAccess],
    responses={
        202: {"model": JobStatus, "description": "Cancel requested; the job stops after its batch in progress."},
        401: ERROR_RESPONSES[401],
        404: ERROR_RESPONSES[404],
    },
)
async def cancel_job(job_id: JobId, service: ServiceDep) -> JobStatus | JSONResponse:
    job = await run_in_threadpool(service.jobs.cancel, job_id)
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while not job.final and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        job = await run_in_threadpool(service.jobs.get, job_id) or job
    if job.final:
        return status_of(job)
    return JSONResponse(status_of(job).model_dump(mode="json"), status_code=202)
