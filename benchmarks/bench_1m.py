"""The whole service at 1M passages: build, derived-index rebuilds, start-up, memory, disk and question latency.

The index is built as `bench_query` builds its 100k (its `build_index`): the seeds, the eval contexts that answer
the benchmark questions (through the indexer and the real model), then synthetic passages up to N written through
`Store.upsert` in batches, so the vector and lexical indexes are built by the real code; their text is drawn from
the sentences of every eval context (`TEXT_FROM`). It is kept under
embeddings/bench/1m/ and reused by the next run with the same N (delete the folder to rebuild it).
Then each derived index is rebuilt from the database alone: its files deleted, the store opened (which rebuilds
it) and the open timed, beside an open that rebuilds nothing.
The service is `qa serve` in its own process (`bench_query.Server`), on this index and on the seeds only (the
index `make run` serves), measured alike: time to /readyz, memory (VmRSS, VmHWM) once ready and after the
questions, 200 questions one at a time interleaved with the bare question encode, then 16 clients (the bare
encode timed just before and after that burst). Question-vector cache off on both, so every request encodes.

Run: `.venv/bin/python -m benchmarks.bench_1m [--passages N]` (`make bench-1m`, not part of `make bench`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_query import N_QUESTIONS, Server, build_index, concurrency, latency
from benchmarks.common import (
    ROOT,
    WORK,
    all_contexts,
    machine,
    peak_rss_mb,
    percentiles,
    process_memory_mb,
    question_contexts,
    questions,
    save,
    timed,
)
from qa.config import Settings
from qa.encoders import Encoder, load_sentence_transformer, with_query_path
from qa.service import Service
from qa.store import DB_FILE, Store
from qa.vectors import META_FILE
from qa.vectors.faiss import INDEX_FILE, KEYS_FILE

log = logging.getLogger("bench.1m")
DEFAULT_PASSAGES = 1_000_000
CLIENTS = 16
BURST = 160  # requests of the 16-client burst
AROUND_BURST = 20  # bare encodes timed before the burst, and as many after
BUILT_MARKER = "built.json"  # in the data folder, written once a build has finished
# Synthetic text from the sentences of every eval context, not only of those that answer the questions as at 100k:
# at 1M those ~100 sentences would make every term of the lexical index occur in most passages.
TEXT_FROM = "all eval contexts"
# Disk a passage takes (database with sentence vectors, FAISS, lexical), with a margin: benchmarks/README.md.
BYTES_PER_PASSAGE = 12_000


def code_version() -> str:
    """The commit the service code is at, and whether qa/ differs from it (several engineers share this tree)."""
    run = lambda *args: subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()  # noqa: E731
    commit = run("rev-parse", "--short", "HEAD")
    return f"{commit} + uncommitted changes in qa/" if run("status", "--porcelain", "qa") else commit


def settings(name: str) -> Settings:
    return Settings(data_dir=WORK / name, models_dir=Settings().models_path, query_cache_size=0)


def component(path: Path) -> str:
    """Which part of an index folder a file belongs to."""
    name = path.name
    if name.startswith(DB_FILE):  # with its -wal and -shm files
        return "sqlite"
    if name in {INDEX_FILE, KEYS_FILE, META_FILE}:
        return "vectors"
    if name.startswith("lexical"):
        return "lexical"
    return "other"


def size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def disk(index_dir: Path, passages: int) -> dict[str, Any]:
    parts: dict[str, int] = {}
    for path in index_dir.iterdir():
        parts[component(path)] = parts.get(component(path), 0) + size_of(path)
    total = sum(parts.values())
    return {
        "bytes": total,
        "bytes_per_passage": total / passages,
        "components": {k: {"bytes": v, "bytes_per_passage": v / passages} for k, v in sorted(parts.items())},
    }


class LogLines(logging.Handler):
    """The service's own log lines while it is attached (the store logs what each rebuild took)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}")

    def __enter__(self) -> list[str]:
        logging.getLogger("qa").addHandler(self)
        return self.lines

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("qa").removeHandler(self)


def timed_open(config: Settings, rebuild: str | None) -> dict[str, Any]:
    """Delete the files of one derived index (`rebuild`: "vectors" or "lexical"; None: none), then time
    `Store.open`, which rebuilds what is missing from the database."""
    for path in list(config.index_dir.iterdir()):
        if component(path) == rebuild:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    store: list[Store] = []
    with LogLines() as lines:
        seconds = timed(lambda: store.append(Store.open(config.index_dir, vectors=config.vectors)))
        # What each derived index holds, against the database: a rebuild must give one entry per passage.
        held = {
            "passages": store[0].manifest().passages,
            "vectors": len(store[0].index),
            "lexical": len(store[0].lexical),
        }
        store[0].close()
    log.info("open rebuilding %s: %.1f s, %s", rebuild or "nothing", seconds, held)
    if len(set(held.values())) > 1:
        log.warning("the derived indexes do not hold one entry per passage: %s", held)
    return {"open_s": seconds, "held": held, "log": lines}


def ensure_built(config: Settings, encoder: Encoder, contexts: list[dict], passages: int) -> dict[str, Any]:
    """The index of `passages` passages: reused when a finished build of that size is there, else built afresh."""
    marker = config.data_dir / BUILT_MARKER
    try:
        built = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        built = {}
    recipe = {"passages": passages, "text_from": TEXT_FROM}
    if recipe.items() <= built.items() and (config.index_dir / DB_FILE).is_file():
        log.info("reusing the index of %d passages built at %s", passages, built["built_at"])
        return {**built, "reused": True}
    shutil.rmtree(config.data_dir, ignore_errors=True)
    free = shutil.disk_usage(WORK.parent).free
    if free < passages * BYTES_PER_PASSAGE:
        raise SystemExit(
            f"{free / 1e9:.0f} GB free under {WORK.parent}, ~{passages * BYTES_PER_PASSAGE / 1e9:.0f} needed"
        )
    started = time.perf_counter()
    service = Service.load(config, encoder=encoder)
    build_index(service, contexts, passages, text_from=all_contexts(), progress=True)
    service.close()
    built = {
        **recipe,
        "build_s": time.perf_counter() - started,
        "build_peak_rss_mb": peak_rss_mb(),  # this process, model included
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "code": code_version(),
    }
    marker.write_text(json.dumps(built), encoding="utf-8")
    log.info("built %d passages in %.0f s", passages, built["build_s"])
    return {**built, "reused": False}


def measure_server(
    config: Settings, qs: list[str], others: list[str], bare: Callable[[list[str]], Any]
) -> dict[str, Any]:
    server = Server(config)
    with server as url:
        assert server.process is not None
        pid = server.process.pid
        stats = httpx.get(f"{url}/v1/stats", timeout=30).json()
        ready = process_memory_mb(pid)
        log.info("%d passages: ready in %.1f s, %s", stats["passages"], server.ready_s, ready)
        one = latency(url, qs, bare)
        log.info("1 client: %s", one)
        encodes = [timed(lambda q=q: bare([q])) for q in others[BURST : BURST + AROUND_BURST]]
        burst = concurrency(url, others, CLIENTS, BURST)
        encodes += [timed(lambda q=q: bare([q])) for q in others[BURST + AROUND_BURST : BURST + 2 * AROUND_BURST]]
        burst["bare_encode"] = percentiles(encodes)
        burst["p50_ratio"] = burst["p50_ms"] / burst["bare_encode"]["p50_ms"]
        burst["p95_ratio"] = burst["p95_ms"] / burst["bare_encode"]["p95_ms"]
        log.info("%d clients: %s", CLIENTS, burst)
        after = process_memory_mb(pid)
    return {
        "load_average": os.getloadavg(),  # the machine is shared: what else ran during these questions
        "passages": stats["passages"],
        "index_kind": stats["index_kind"],
        "ready_s": server.ready_s,
        "memory_ready": ready,
        "memory_after_questions": after,
        "one_client": one,
        "clients": burst,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=DEFAULT_PASSAGES, help="passages in the index (default 1M)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request
    command = f"python -m benchmarks.bench_1m --passages {args.passages}"
    log.info("%s on %s", command, machine())
    config, seeds = settings("1m"), settings("1m-seeds")
    qs, contexts = question_contexts(N_QUESTIONS)
    others = [q for q in questions() if q not in set(qs)]
    base = load_sentence_transformer(config)
    encoder = with_query_path(base, config)
    bare = encoder.batcher.fn  # the question engine itself: no cache, no batcher

    build = ensure_built(config, encoder, contexts, args.passages)
    # Untimed first: a derived index left stale (by an interrupted run, or code that changed) is rebuilt here, so that
    # each timed open below rebuilds only the index whose files it deleted.
    timed_open(config, None)
    rebuild = {name or "nothing": timed_open(config, name) for name in ("vectors", "lexical", None)}
    on_disk = disk(config.index_dir, args.passages)
    log.info("disk: %s", on_disk)

    shutil.rmtree(seeds.data_dir, ignore_errors=True)
    Service.load(seeds, encoder=encoder).close()  # `qa index`, the first half of `make run`
    servers = {"seeds": measure_server(seeds, qs, others, bare)}
    servers["full"] = measure_server(config, qs, others, bare)
    full, small = servers["full"], servers["seeds"]
    above = {
        "rss_ready_mb": full["memory_ready"]["rss_mb"] - small["memory_ready"]["rss_mb"],
        "rss_after_questions_mb": full["memory_after_questions"]["rss_mb"] - small["memory_after_questions"]["rss_mb"],
        "peak_rss_mb": full["memory_after_questions"]["peak_rss_mb"] - small["memory_after_questions"]["peak_rss_mb"],
    }
    results = {
        "passages": args.passages,
        "engine": encoder.engine_name,
        "questions": len(qs),
        "code": code_version(),
        "build": build,
        "rebuild": rebuild,
        "disk": on_disk,
        "servers": servers,
        "above_seeds": above,
        "command": command,
    }
    log.info("results in %s", save("bench_1m", results))


if __name__ == "__main__":
    main()
