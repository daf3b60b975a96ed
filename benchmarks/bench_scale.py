"""Vector index at scale with synthetic vectors: build, load, RSS, search latency and recall@10 against exact.

Two synthetic distributions, 384 dimensions, unit length:
- `uniform`: uniformly random directions, the worst case for any ANN index (no structure at all);
- `e5-like`: a Gaussian with the mean and covariance of real multilingual-e5-small passage vectors (the
  eval contexts), so the spectrum and the anisotropy match the model's space.
Each index is built with `QA_FAISS_INDEX=auto` (kind and parameters from the size), saved, then loaded in a
fresh process that measures load time (read into memory, the default; and memory-mapped), RSS and 200
single-question searches.
Baselines from the same run: exact flat search (latency, and the truth for recall) and a bare flat add (build).

Run: `.venv/bin/python -m benchmarks.bench_scale` (part of `make bench`).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from benchmarks.common import WORK, all_contexts, percentiles, rss_mb, save, timed, unit_rows
from qa.config import Settings
from qa.vectors import VectorConfig, load_vector_index, make_vector_index

log = logging.getLogger("bench.scale")
DIM = 384
N_QUERIES = 200
RUNS = [("uniform", 10_000), ("uniform", 100_000), ("uniform", 1_000_000), ("e5-like", 1_000_000)]


def real_passage_vectors() -> np.ndarray:
    """Real passage vectors of 192 eval contexts (encoded once, then cached under embeddings/bench/)."""
    cached = WORK / "scale_real_passages.npy"
    if cached.is_file():
        return np.load(cached)
    from qa.encoders import load_sentence_transformer

    encoder = load_sentence_transformer(Settings())
    texts = [f"{c.get('title', '')}\n{c['text']}" for c in all_contexts()[:192]]
    vectors = encoder.encode_passages(texts)
    WORK.mkdir(parents=True, exist_ok=True)
    np.save(cached, vectors)
    return vectors


def sampler(distribution: str):
    if distribution == "uniform":
        return lambda rng, n: unit_rows(rng, n, DIM)
    real = real_passage_vectors().astype(np.float64)
    mean = real.mean(axis=0)
    cov = np.cov(real, rowvar=False)
    cov += np.eye(DIM) * 0.05 * np.trace(cov) / DIM  # fewer samples than dimensions: shrink towards isotropic
    factor = np.linalg.cholesky(cov).astype(np.float32)

    def draw(rng: np.random.Generator, n: int) -> np.ndarray:
        out = np.empty((n, DIM), dtype=np.float32)
        for start in range(0, n, 100_000):
            z = rng.standard_normal((min(100_000, n - start), DIM), dtype=np.float32)
            block = mean.astype(np.float32) + z @ factor.T
            out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out

    return draw


def run(distribution: str, size: int, kind: str = "auto") -> dict:
    rng = np.random.default_rng(size)
    draw = sampler(distribution)
    vectors, queries = draw(rng, size), draw(rng, N_QUERIES)
    keys = np.arange(1, size + 1, dtype=np.int64)
    flat = faiss.IndexFlatIP(DIM)
    flat_build = timed(lambda: flat.add(vectors))
    _, truth = flat.search(queries, 10)
    exact = percentiles([timed(lambda q=q: flat.search(q[None], 10)) for q in queries[:40]])
    flat.reset()  # free the exact copy before the index is built
    folder = WORK / f"scale-{distribution}-{size}-{kind}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    index = make_vector_index(VectorConfig(faiss_index=kind), DIM, expected_size=size, directory=folder)
    build = timed(lambda: index.add(keys, vectors))
    save_s = timed(lambda: index.save(0))
    np.save(folder / "queries.npy", queries)
    np.save(folder / "truth.npy", truth + 1)  # keys are positions + 1
    described = index.describe()
    index.close()
    probe = json.loads(
        subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_scale", "--probe", str(folder)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()[-1]
    )
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "distribution": distribution,
        "size": size,
        "index": described,
        "build_s": build,
        "flat_add_s": flat_build,
        "save_s": save_s,
        "exact_search": exact,
        **probe,
        "p50_vs_exact": probe["search"]["p50_ms"] / exact["p50_ms"],
    }


def probe(folder: Path) -> dict:
    """In a fresh process: load (as the service does by default), search each query alone, recall@10 against the
    exact truth; then the memory-mapped load time (`QA_FAISS_MMAP=1`)."""
    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    before = rss_mb()
    started = time.perf_counter()
    index = load_vector_index(VectorConfig(), folder)
    load_s = time.perf_counter() - started
    latencies, found = [], []
    for q in queries:
        started = time.perf_counter()
        result = index.search(q[None], 10)
        latencies.append(time.perf_counter() - started)
        found.append(result.keys[0])
    recall = _recall(found, truth)
    result = {
        "load_s": load_s,
        "mmap": VectorConfig().faiss_mmap,
        "rss_mb": rss_mb(),
        "rss_index_mb": rss_mb() - before,
        "search": percentiles(latencies),
        "recall_at_10": recall,
        "sweep": sweep(index, queries, truth),
    }
    index.close()
    del index
    started = time.perf_counter()
    load_vector_index(VectorConfig(faiss_mmap=True), folder).close()
    result["mmap_load_s"] = time.perf_counter() - started
    return result


def _recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / 10 for f, t in zip(found, truth, strict=True)]))


def sweep(index, queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    """Recall and latency against the search-time knob (IVF probes, HNSW efSearch): the trade-off curve."""
    knob = {"ivf": "nprobe", "hnsw": "ef_search"}.get(index.kind)
    rows: list[dict] = []
    for value in (16, 32, 64, 128, 256, 512) if knob else ():
        if knob == "nprobe" and value > index.params["nlist"]:
            break
        index.params[knob] = value
        latencies, found = [], []
        for q in queries[:100]:
            started = time.perf_counter()
            found.append(index.search(q[None], 10).keys[0])
            latencies.append(time.perf_counter() - started)
        rows.append({knob: value, "recall_at_10": _recall(found, truth[:100]), **percentiles(latencies)})
    return rows


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--probe":
        print(json.dumps(probe(Path(sys.argv[2]))))
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runs = []
    # --extended: HNSW at 1M, minutes more to build than IVF, so kept out of `make bench`.
    extended = "--extended" in sys.argv
    plan = [("e5-like", 1_000_000, "hnsw")] if extended else [(d, n, "auto") for d, n in RUNS]
    for distribution, size, kind in plan:
        started = time.perf_counter()
        runs.append(run(distribution, size, kind))
        log.info("%s %d in %.0f s: %s", distribution, size, time.perf_counter() - started, runs[-1])
    command = "python -m benchmarks.bench_scale" + (" --extended" if extended else "")
    save("scale_extended" if extended else "scale", {"runs": runs, "command": command})


if __name__ == "__main__":
    main()
