"""The distributed deployment (issue 14: PostgreSQL + Milvus, stateless `qa serve` replicas) against the embedded one,
on the same index, in the same run.

The index is `bench_query`'s (its `build_index`: the seeds, the eval contexts that answer the 200 benchmark questions
through the indexer and the real model, synthetic passages up to N), built once under embeddings/bench/distributed-N/
and reused by later runs with the same N (delete the folder to rebuild it). Then, all on loopback, in this order:

1. a throwaway PostgreSQL cluster (`tests.postgres`) and a `milvus-lite server` (`tests.milvus`: the only Milvus
   here, a pure-Python engine in one process);
2. `qa migrate`'s `copy_database` of the embedded index's SQLite file into PostgreSQL (timed; nothing re-embedded);
3. `qa serve` on the embedded index, and distributed replica a (`QA_DATABASE_URL`, `QA_VECTOR_BACKEND=milvus`,
   `QA_LEXICAL_BACKEND=milvus`, its own empty `QA_DATA_DIR`), whose first start fills both Milvus collections from
   the database (the fill: its time to /readyz, and the store's own "filled" log lines), then replica b, which finds
   them filled; then the size of each PostgreSQL table (`pg_total_relation_size`, after the fill: it writes the term
   counts) and of the milvus-lite data folder, per passage;
4. latency, one client: the same 200 questions, question i to the embedded server then to replica a;
5. throughput, `--rounds` rounds: 16 client threads on replica a; 8 threads on each of replicas a and b; and, for
   reference, 16 threads on the embedded server — the same `--requests` questions each, the order of the three
   reversed every other round; questions/s, p50/p95, and the CPU seconds each process spent (replicas, Milvus,
   PostgreSQL, the embedded server, this client process) per question;
6. the memory of each server process (VmRSS, VmHWM) after the load.

Everything is stopped and its temp folder removed afterwards. Question-vector cache off everywhere (every request
encodes). The machine is shared (2 cores): the load average is recorded with the figures.

Run: `.venv/bin/python -m benchmarks.bench_distributed [--passages N]` (part of `make bench`, default N = 100,000:
~40 min on 2 cores, most of it milvus-lite's BM25 — the fill ~7 min, ~1.4 CPU-seconds a question; N = 5,000 takes
~4 min).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from benchmarks.bench_1m import code_version, disk
from benchmarks.bench_query import N_QUESTIONS, TARGET_PASSAGES, build_index
from benchmarks.common import (
    ROOT,
    WORK,
    machine,
    percentiles,
    process_memory_mb,
    question_contexts,
    questions,
    save,
)
from qa.config import Settings
from qa.migrate import copy_database
from qa.store import DB_FILE
from tests.milvus import milvus_server
from tests.postgres import postgres_cluster
from tests.replicas import replica_env, stop_process
from tests.servers import _ready, free_port, wait_for

log = logging.getLogger("bench.distributed")
REQUESTS = 160  # questions per throughput measure (16 threads × 10, or 2 × 8 threads × 10)
ROUNDS = 2
CLIENTS = 16
BUILT_MARKER = "built.json"
LATENCY_TARGET = 1.5  # distributed p50 ≤ 1.5 × embedded p50, one replica, one client
SCALE_TARGET = (0.8, 1.2)  # 2 replicas × 8 clients against 1 replica × 16 clients, questions/s
FILLED = re.compile(r"(\S+) filled: (\d+) passages in ([\d.]+) s")
TICKS = os.sysconf("SC_CLK_TCK")
START_GUARD = 3 * 3600.0  # seconds: only turns a hung start into a failure (a fill at 100k takes minutes)


def settings(passages: int) -> Settings:
    return Settings(data_dir=WORK / f"distributed-{passages}", models_dir=Settings().models_path, query_cache_size=0)


def ensure_built(config: Settings, passages: int) -> dict[str, Any]:
    """bench_query's index of `passages` passages: reused when a finished build of that size is there."""
    marker = config.data_dir / BUILT_MARKER
    try:
        built = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        built = {}
    if built.get("passages") == passages and (config.index_dir / DB_FILE).is_file():
        log.info("reusing the index of %d passages built at %s", passages, built["built_at"])
        return {**built, "reused": True}
    from qa.encoders import load_sentence_transformer, with_query_path
    from qa.service import Service

    shutil.rmtree(config.data_dir, ignore_errors=True)
    _, contexts = question_contexts(N_QUESTIONS)
    encoder = with_query_path(load_sentence_transformer(config), config)
    started = time.perf_counter()
    service = Service.load(config, encoder=encoder)
    build_index(service, contexts, passages, progress=True)
    service.close()
    built = {
        "passages": passages,
        "build_s": time.perf_counter() - started,
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "code": code_version(),
    }
    marker.write_text(json.dumps(built), encoding="utf-8")
    log.info("built %d passages in %.0f s", passages, built["build_s"])
    return {**built, "reused": False}


# --- what a process spent ---------------------------------------------------------------------------------------
def _cpu_of(pid: int, *, children: bool = False) -> float:
    """CPU seconds (user + system) `pid` has used; with `children`, also those of its reaped children."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / TICKS


def _children(parent: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == parent:
                out.append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def postgres_cpu(postmaster: int) -> float:
    """The cluster's CPU seconds: the postmaster, its live backends, and those it has reaped."""
    return _cpu_of(postmaster, children=True) + sum(_cpu_of(pid) for pid in _children(postmaster))


class Processes:
    """The processes whose CPU time is accounted around each measure: name → pid (PostgreSQL by its postmaster)."""

    def __init__(self) -> None:
        self.pids: dict[str, int] = {"client (this process)": os.getpid()}
        self.postmaster: int | None = None

    def cpu(self) -> dict[str, float]:
        out = {name: _cpu_of(pid) for name, pid in self.pids.items()}
        if self.postmaster is not None:
            out["postgresql"] = postgres_cpu(self.postmaster)
        return out


@contextmanager
def cpu_spent(processes: Processes, into: dict[str, Any], questions: int) -> Iterator[None]:
    before = processes.cpu()
    yield
    after = processes.cpu()
    into["cpu_ms_per_question"] = {name: (after[name] - before[name]) * 1000 / questions for name in after}


# --- questions over HTTP ----------------------------------------------------------------------------------------
def ask(client: httpx.Client, url: str, question: str) -> tuple[float, str | None]:
    """Seconds for one POST /v1/ask (top 5, highlights and answer on), and the top hit's passage id."""
    started = time.perf_counter()
    response = client.post(f"{url}/v1/ask", json={"question": question, "top_k": 5})
    elapsed = time.perf_counter() - started
    response.raise_for_status()
    hits = response.json()["hits"]
    return elapsed, hits[0]["passage_id"] if hits else None


def latency(embedded: str, distributed: str, qs: list[str]) -> dict[str, Any]:
    """One client: question i to the embedded server, then to the distributed replica."""
    times: dict[str, list[float]] = {"embedded": [], "distributed": []}
    same_top = 0
    with httpx.Client(timeout=120) as client:
        for q in qs[:5]:  # warm the connections
            ask(client, embedded, q + " ?")
            ask(client, distributed, q + " ?")
        for q in qs:
            a, top_a = ask(client, embedded, q)
            b, top_b = ask(client, distributed, q)
            times["embedded"].append(a)
            times["distributed"].append(b)
            same_top += top_a == top_b
    out: dict[str, Any] = {name: percentiles(seconds) for name, seconds in times.items()}
    out["p50_ratio"] = out["distributed"]["p50_ms"] / out["embedded"]["p50_ms"]
    out["p95_ratio"] = out["distributed"]["p95_ms"] / out["embedded"]["p95_ms"]
    out["same_top_hit"] = same_top
    return out


def burst(targets: list[tuple[str, int]], qs: list[str]) -> dict[str, Any]:
    """`qs` split evenly over client threads, `threads` of them on each (url, threads) of `targets`."""
    slots = [url for url, threads in targets for _ in range(threads)]
    per_thread = len(qs) // len(slots)
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def run(url: str, part: list[str]) -> None:
        try:
            with httpx.Client(timeout=300) as client:
                seconds = [ask(client, url, q)[0] for q in part]
        except BaseException as exc:  # re-raised below: a failed request must not pass as a fast one
            failures.append(exc)
            return
        with lock:
            latencies.extend(seconds)

    threads = [
        threading.Thread(target=run, args=(url, qs[i * per_thread : (i + 1) * per_thread]))
        for i, url in enumerate(slots)
    ]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if failures:
        raise failures[0]
    return {"requests": len(latencies), "wall_s": wall, "per_s": len(latencies) / wall, **percentiles(latencies),
            "latencies": latencies}  # fmt: skip


def throughput(configs: dict[str, list[tuple[str, int]]], qs: list[str], rounds: int, procs: Processes) -> dict:
    """Each configuration `rounds` times over the same questions, the order reversed every other round."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    for r in range(rounds):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        for name in order:
            row: dict[str, Any] = {"round": r}
            with cpu_spent(procs, row, len(qs)):
                row.update(burst(configs[name], qs))
            row["load_average_1min"] = os.getloadavg()[0]
            runs[name].append(row)
            log.info("round %d, %s: %.1f questions/s, p50 %.0f ms, p95 %.0f ms, CPU ms/question %s", r, name,
                     row["per_s"], row["p50_ms"], row["p95_ms"],
                     {k: round(v) for k, v in row["cpu_ms_per_question"].items()})  # fmt: skip
    out: dict[str, Any] = {}
    for name, rows in runs.items():
        requests = sum(row["requests"] for row in rows)
        pooled = percentiles([seconds for row in rows for seconds in row.pop("latencies")])
        wall = sum(row["wall_s"] for row in rows)
        cpu = [row["cpu_ms_per_question"] for row in rows]
        out[name] = {
            "threads": configs[name],
            "requests": requests,
            "per_s": requests / wall,
            "p50_ms": pooled["p50_ms"],
            "p95_ms": pooled["p95_ms"],
            "runs": rows,
            "cpu_ms_per_question": {k: sum(c[k] for c in cpu) / len(cpu) for k in cpu[0]},
        }
    return out


# --- sizes ------------------------------------------------------------------------------------------------------
def postgres_sizes(url: str, passages: int) -> dict[str, Any]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' AND c.relkind = 'r' "
                    "ORDER BY 2 DESC"
                )
            ).all()
            database = conn.scalar(sa.text("SELECT pg_database_size(current_database())"))
    finally:
        engine.dispose()
    tables = {name: {"bytes": size, "bytes_per_passage": size / passages} for name, size in rows}
    total = sum(size for _, size in rows)
    return {
        "tables": tables,
        "bytes": total,
        "bytes_per_passage": total / passages,
        "database_bytes": database,
    }


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --- the servers ------------------------------------------------------------------------------------------------
class QaServe:
    """`qa serve` in a subprocess on a free loopback port, output in `<folder>/<name>.log` (as `tests.servers`
    starts it, without its 240 s guard: a first replica fills Milvus before it is ready, which takes longer)."""

    def __init__(self, name: str, env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.label = "embedded qa serve" if name == "embedded" else f"replica {name}"
        self.env = env
        self.log = folder / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ready_s = 0.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> None:
        port = free_port()
        started = time.perf_counter()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "qa.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.url = f"http://127.0.0.1:{port}"
        process = self.process
        try:
            wait_for(lambda: _ready(self.url), what=f"{self.label} becoming ready",
                     alive=lambda: process.poll() is None, guard=START_GUARD)  # fmt: skip
        except BaseException as exc:
            self.stop()
            raise RuntimeError(f"{exc}\n{self.log.read_text(errors='replace')[-3000:]}") from exc
        self.ready_s = time.perf_counter() - started

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)


@contextmanager
def heartbeat(what: str, milvus_data: Path, every: float = 60.0) -> Iterator[None]:
    """A log line every `every` seconds while the block runs (a replica filling Milvus is silent for minutes)."""
    done = threading.Event()
    started = time.perf_counter()

    def beat() -> None:
        while not done.wait(every):
            log.info("%s: %.0f s so far, Milvus data %.0f MB", what, time.perf_counter() - started,
                     folder_bytes(milvus_data) / 1e6)  # fmt: skip

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def measure(
    results: dict[str, Any],
    servers: dict[str, QaServe],
    milvus_data: Path,
    qs: list[str],
    others: list[str],
    args: argparse.Namespace,
    procs: Processes,
) -> None:
    embedded, a, b = servers["embedded"], servers["a"], servers["b"]
    filled = [
        {"collection": m[1].removeprefix("engine:"), "passages": int(m[2]), "seconds": float(m[3])}
        for m in FILLED.finditer(a.log.read_text(errors="replace"))
    ]
    milvus_bytes = folder_bytes(milvus_data)
    results["ready_s"] = {name: server.ready_s for name, server in servers.items()}
    results["fill"] = {"collections": filled, "seconds": sum(f["seconds"] for f in filled)}
    results["milvus"] = {"bytes": milvus_bytes, "bytes_per_passage": milvus_bytes / args.passages}
    log.info("fill: %s; Milvus data %.0f bytes a passage", results["fill"], milvus_bytes / args.passages)
    results["replica_passages"] = httpx.get(f"{a.url}/v1/stats", timeout=60).json()["passages"]

    with heartbeat("latency", milvus_data):
        results["latency"] = latency(embedded.url, a.url, qs)
    log.info("latency: %s", results["latency"])
    configs = {
        "1 replica × 16 clients": [(a.url, CLIENTS)],
        "2 replicas × 8 clients": [(a.url, CLIENTS // 2), (b.url, CLIENTS // 2)],
        "embedded × 16 clients": [(embedded.url, CLIENTS)],
    }
    results["throughput"] = throughput(configs, others, args.rounds, procs)
    one, two = (results["throughput"][k]["per_s"] for k in list(configs)[:2])
    results["replicas_ratio"] = two / one
    results["memory_mb"] = {server.label: process_memory_mb(server.pid) for server in servers.values()}
    results["memory_mb"]["milvus-lite server"] = process_memory_mb(procs.pids["milvus-lite server"])
    results["milvus"]["bytes_after_load"] = folder_bytes(milvus_data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=TARGET_PASSAGES, help="passages in the index (100,000)")
    parser.add_argument("--requests", type=int, default=REQUESTS, help="questions per throughput measure")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="rounds of the throughput measures")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request
    command = f"python -m benchmarks.bench_distributed --passages {args.passages}"
    start = machine()
    log.info("%s on %s", command, start)
    config = settings(args.passages)
    build = ensure_built(config, args.passages)
    qs, _ = question_contexts(N_QUESTIONS)
    others = [q for q in questions() if q not in set(qs)][: args.requests]
    embedded_disk = disk(config.index_dir, args.passages)
    procs = Processes()
    results: dict[str, Any] = {"machine": start, "passages": args.passages, "command": command, "code": code_version()}
    results["build"] = build
    results["embedded_disk"] = embedded_disk

    with (
        postgres_cluster() as pg,
        milvus_server() as milvus,
        tempfile.TemporaryDirectory(prefix="viqa-bench-replicas-") as tmp,
    ):
        procs.postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])
        procs.pids["milvus-lite server"] = milvus.process.pid  # type: ignore[union-attr]
        report = copy_database(f"sqlite:///{config.index_dir / DB_FILE}", pg.url)
        log.info("copied into PostgreSQL: %s in %.1f s", report.rows, report.seconds)
        results["migrate"] = {"seconds": report.seconds, "rows": report.rows}

        env = replica_env(
            database_url=pg.url, milvus_uri=milvus.uri, models_dir=config.models_path, QA_QUERY_CACHE_SIZE="0"
        )
        embedded_env = {"QA_DATA_DIR": str(config.data_dir), "QA_MODELS_DIR": str(config.models_path),
                        "QA_QUERY_CACHE_SIZE": "0"}  # fmt: skip
        servers: dict[str, QaServe] = {"embedded": QaServe("embedded", embedded_env, Path(tmp))}
        for name in ("a", "b"):
            servers[name] = QaServe(name, {**env, "QA_DATA_DIR": str(Path(tmp) / name)}, Path(tmp))
        try:
            for name, server in servers.items():  # replica a fills Milvus from the database, b finds it filled
                with heartbeat(f"starting {name}", milvus.data):
                    server.start()
                procs.pids[server.label] = server.pid
                log.info("%s ready in %.1f s", server.label, server.ready_s)
            # After the fill: it writes the term counts BM25 reads (`term_stats`) into the database.
            results["postgresql"] = postgres_sizes(pg.url, args.passages)
            log.info("PostgreSQL: %.0f bytes a passage", results["postgresql"]["bytes_per_passage"])
            measure(results, servers, milvus.data, qs, others, args, procs)
        finally:
            for server in servers.values():
                server.stop()
    results["load_average_at_end"] = os.getloadavg()
    results["targets"] = {
        "latency_p50_ratio_max": LATENCY_TARGET,
        "latency_met": results["latency"]["p50_ratio"] <= LATENCY_TARGET,
        "replicas_ratio_range": SCALE_TARGET,
        "replicas_met": SCALE_TARGET[0] <= results["replicas_ratio"] <= SCALE_TARGET[1],
    }
    log.info("latency p50 ratio %.2f, replicas ratio %.2f", results["latency"]["p50_ratio"], results["replicas_ratio"])
    log.info("results in %s", save("distributed", results))


if __name__ == "__main__":
    main()
