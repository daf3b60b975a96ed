"""Questions while a job indexes: what a job costs a question, and what giving way to questions buys back.

One process, the real service over the seeds (real model). Questions are asked one at a time, idle, then while a
job of `ARTICLES` eval contexts (under new ids) runs, for each way of running the job: the runner never waiting,
the runner giving way between batches while a question is being answered, also before each forward pass of its
encoder (`qa.jobs.GivingWay`), and giving way between batches with
torch limited to one thread for the job's encoding (`torch.set_num_threads` is process-wide: it would slow a
synchronous write running at the same time as well). The baseline is the idle latency measured just before each.
Each question is asked once in the whole run (the eval sets' questions, shuffled): none finds its answer cached.

Run: `QA_MODELS_DIR=... .venv/bin/python -m benchmarks.bench_jobs` (the job that never waits and the one `qa serve`
runs; `--all` adds the other two ways).
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable, Iterator

import torch

from benchmarks.common import ROOT, WORK, all_contexts, percentiles, questions, save
from qa.config import Settings
from qa.corpus import article_from_record
from qa.indexing import Indexer
from qa.jobs import GivingWay, JobRunner, NewArticle
from qa.schemas import SearchOptions
from qa.service import Service

log = logging.getLogger("bench.jobs")
ARTICLES = 500  # the size: a job of minutes, not seconds
N_QUESTIONS = 40
THINK_SECONDS = 0.25  # between two questions: a user reading the answer (and the eval sets' questions last the run)


def job_articles(service: Service, contexts: list[dict], prefix: str) -> list[NewArticle]:
    records = [
        {"id": f"{prefix}-{n}", "title": c.get("title", "").replace("_", " ") or "Bài viết", "body": c["text"]}
        for n, c in enumerate(contexts)
    ]
    return [NewArticle(r["id"], r, passages=len(service.indexer.chunk(article_from_record(r)))) for r in records]


def ask_all(service: Service, qs: Iterator[str], n: int | None = None, until: Callable[[], bool] | None = None):
    """Ask questions from `qs` one at a time (`n` of them, or until `until()`); each one's seconds. Every question
    is asked once in the whole run: a question asked again finds its passages in caches, and would flatter."""
    seconds = []
    for q in qs:
        if (n is not None and len(seconds) >= n) or (until is not None and until()):
            break
        started = time.perf_counter()
        service.ask([q], SearchOptions())
        seconds.append(time.perf_counter() - started)
        time.sleep(THINK_SECONDS)
    return seconds


def ended(service: Service, job_id: str) -> bool:
    job = service.jobs.get(job_id)
    return job is None or job.final


def stats(seconds: list[float]) -> dict:
    return {**percentiles(seconds), "max_ms": max(seconds) * 1000, "n": len(seconds)}


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    data = WORK / "jobs"
    shutil.rmtree(data, ignore_errors=True)
    settings = Settings(data_dir=data, seeds=ROOT / "seeds", query_cache_size=0)
    service = Service.load(settings)
    qs = iter(questions())
    contexts = all_contexts()
    ask_all(service, qs, N_QUESTIONS)  # warm up
    threads = torch.get_num_threads()
    variants = {
        "never_waits": (lambda: False, threads, False),
        "gives_way_before_each_pass": (service.questions_waiting, threads, True),  # what `qa serve` does
    }
    if "--all" in sys.argv[1:]:  # the other ways measured before choosing (more questions than the sets hold)
        variants["gives_way_between_batches"] = (service.questions_waiting, threads, False)
        variants["gives_way_one_torch_thread"] = (service.questions_waiting, 1, False)
    results = {}
    for name, (waiting, torch_threads, per_pass) in variants.items():
        idle = ask_all(service, qs, N_QUESTIONS)
        articles = job_articles(service, contexts[:ARTICLES], name)  # the same texts under the job's own ids
        encoder = GivingWay(service.encoder, waiting) if per_pass else service.encoder
        indexer = Indexer.from_settings(service.store, encoder, service.settings)
        runner = JobRunner(service.jobs, indexer, questions_waiting=waiting, poll_seconds=0.05)
        torch.set_num_threads(torch_threads)
        job_id = service.jobs.submit(articles)
        started = time.perf_counter()
        runner.start()
        busy = ask_all(service, qs, until=lambda job_id=job_id: ended(service, job_id))
        while not ended(service, job_id):
            time.sleep(0.05)
        job_seconds = time.perf_counter() - started
        runner.stop()
        torch.set_num_threads(threads)
        results[name] = {
            "idle": stats(idle),
            "during_job": stats(busy),
            "job_s": job_seconds,
            "torch_threads": torch_threads,
        }
        log.info("%s: %s", name, results[name])
    service.close()
    path = save("jobs", {"articles": ARTICLES, "questions_idle": N_QUESTIONS, "results": results})
    print(f"saved {path}")
    for name, r in results.items():
        print(
            f"{name:28s} idle p50 {r['idle']['p50_ms']:6.1f} p95 {r['idle']['p95_ms']:6.1f} | during job "
            f"p50 {r['during_job']['p50_ms']:6.1f} p95 {r['during_job']['p95_ms']:6.1f} "
            f"max {r['during_job']['max_ms']:6.1f} (n={r['during_job']['n']}) | job {r['job_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
