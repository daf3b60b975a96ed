"""Shared pieces of the benchmarks: eval questions and contexts, timing statistics, machine info, result files."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import random
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# The evaluation sets the project carries (evalsets/README.md: origin and licences); QA_BENCH_EVAL names another folder
# of the same layout.
EVAL = Path(os.environ.get("QA_BENCH_EVAL", ROOT / "evalsets"))
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "embeddings" / "bench"  # generated, gitignored


def questions(n: int | None = None, seed: int = 0) -> list[str]:
    """Distinct Vietnamese questions from the eval sets (retrieval.jsonl), shuffled reproducibly."""
    seen: dict[str, None] = {}
    for path in sorted(EVAL.glob("*/retrieval.jsonl")):
        for line in path.open(encoding="utf-8"):
            seen.setdefault(json.loads(line)["question"].strip(), None)
    out = list(seen)
    random.Random(seed).shuffle(out)
    return out if n is None else out[:n]


def question_contexts(n: int, seed: int = 0) -> tuple[list[str], list[dict[str, Any]]]:
    """`n` questions and the eval contexts that answer them (each context once)."""
    contexts: dict[str, dict[str, Any]] = {}
    for path in sorted(EVAL.glob("*/contexts.jsonl")):
        for line in path.open(encoding="utf-8"):
            row = json.loads(line)
            contexts[row["context_id"]] = row
    rows = []
    for path in sorted(EVAL.glob("*/retrieval.jsonl")):
        rows.extend(json.loads(line) for line in path.open(encoding="utf-8"))
    # Whole contexts' questions at a time: fewer contexts to encode for the same number of questions.
    by_context: dict[str, list[str]] = {}
    for row in rows:
        if row["context_id"] in contexts:
            by_context.setdefault(row["context_id"], []).append(row["question"])
    order = sorted(by_context)
    random.Random(seed).shuffle(order)
    order.sort(key=lambda c: -len(by_context[c]))  # stable: shuffled within equal counts
    picked: dict[str, dict[str, Any]] = {}
    asked: dict[str, None] = {}
    for context_id in order:
        for question in by_context[context_id]:
            if len(asked) < n and question not in asked:
                asked[question] = None
                picked[context_id] = contexts[context_id]
    return list(asked), list(picked.values())


def all_contexts() -> list[dict[str, Any]]:
    out = []
    for path in sorted(EVAL.glob("*/contexts.jsonl")):
        out.extend(json.loads(line) for line in path.open(encoding="utf-8"))
    return out


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "n": len(ms)}


def timed(fn: Callable[[], Any]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def run_concurrently(
    clients: int, items: list[str], work: Callable[[list[str]], list[float]]
) -> tuple[float, list[float]]:
    """Split `items` evenly over `clients` threads running `work` (which returns per-item seconds).

    Returns the wall-clock seconds and every latency.
    """
    per_client = len(items) // clients
    latencies: list[float] = []
    lock = threading.Lock()

    def run(part: list[str]) -> None:
        seconds = work(part)
        with lock:
            latencies.extend(seconds)

    threads = [
        threading.Thread(target=run, args=(items[i * per_client : (i + 1) * per_client],)) for i in range(clients)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


def process_memory_mb(pid: int) -> dict[str, float]:
    """A process's resident memory now (VmRSS) and its peak since it started (VmHWM), in MB; and of the resident
    memory, how much is file pages (memory-mapped files: shared with the page cache, evictable)."""
    names = {"VmRSS": "rss_mb", "VmHWM": "peak_rss_mb", "RssFile": "rss_file_mb"}
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in names:
            out[names[name]] = int(value.split()[0]) * 1024 / 1e6  # reported in kB
    return out


# The load when this benchmark's process started (each benchmark is a process of its own: `make bench`), not when
# its results are saved.
_LOAD_AT_START = os.getloadavg()


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu or platform.processor(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "load_average_at_start": _LOAD_AT_START,
        "load_average_at_save": os.getloadavg(),
    }


def save(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"machine": machine(), "finished_at": time.strftime("%Y-%m-%d %H:%M:%S"), **data}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


def unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """Uniformly random unit vectors, generated in blocks to bound memory."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out
