"""Tone-mark restoration on the eval sets (benchmarks/quality.md, "Tone-mark restoration"): how well the questions'
marks are restored, how long a restoration takes, and which fusion weights restored questions get.

- `accuracy`: every question asked without its marks, restored from the set's own cached index (tantivy counts, no
  model call), compared syllable by syllable with the original, for each `Smoothing` given (default: the shipped
  one); also how many marked questions would be touched (none should be).
- `latency LEXICAL_DIR`: the restore call alone, p50/p95 over every eval question, on a built tantivy index (the
  100k-passage one of `benchmarks/bench_query.py` is `embeddings/bench/query/default/lexical`).
- `fusion`: `qa eval --strip-accents` (R@1, R@5, MRR@10, answer@1) on both sets for each candidate weighting of
  restored questions, to fit on one set and confirm on the other.

Run: `.venv/bin/python -m benchmarks.restore_sweep accuracy|latency DIR|fusion` (reads evalsets/; the eval indexes
are built under embeddings/eval-cache/ once, as `qa eval` builds them).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

import qa.lexical.analysis as analysis
from benchmarks.common import EVAL, machine
from qa.chunking import CHUNKING
from qa.config import Settings
from qa.encoders import load_encoder
from qa.eval import build_index, evaluate, read_questions
from qa.lexical.tantivy import DIRECTORY, TantivyIndex
from qa.query import Query
from qa.restore import Smoothing, restore
from qa.retriever import Fusion, Retriever
from qa.text import strip_accents, tokenize

SETS = ("xquad_vi", "mlqa_vi_dev")
# (label, restored dense weights, least confidence of a syllable asked of the accented fields)
FUSIONS = [
    ("w 0.3", ((0.0, 0.3),), 0.7),
    ("w 0.5", ((0.0, 0.5),), 0.7),
    ("w 0.5, sure ≥ 0.5", ((0.0, 0.5),), 0.5),
    ("w 0.5, sure ≥ 0.9", ((0.0, 0.5),), 0.9),
    ("w 0.5, marks as typed only", ((0.0, 0.5),), 1.01),
    ("w 0.6", ((0.0, 0.6),), 0.7),
    ("confidence ≥ 0.5: 0.5, else 0.3", ((0.5, 0.5), (0.0, 0.3)), 0.7),
    ("confidence ≥ 0.5: 0.6, else 0.4", ((0.5, 0.6), (0.0, 0.4)), 0.7),
]


def _store(name: str):  # type: ignore[no-untyped-def]
    settings = Settings()
    encoder = load_encoder(settings)
    folder = EVAL / name
    store = build_index(
        folder / "contexts.jsonl", encoder, chunking=CHUNKING, cache_dir=settings.data_dir / "eval-cache"
    )
    return store, encoder


def accuracy(smoothing: Smoothing, name: str) -> dict[str, float]:
    store, _ = _store(name)
    counts = store.term_counts()
    right = words = whole = touched = 0
    questions = read_questions(EVAL / name / "retrieval.jsonl")
    for question in questions:
        typed = strip_accents(question.question)
        restoration = restore(Query.parse(typed), counts, smoothing)
        expected, got = tokenize(question.question), tokenize(restoration.text if restoration else typed)
        pairs = [(e, g) for e, g in zip(expected, got, strict=True) if any(c.isalpha() for c in e)]
        right += sum(e == g for e, g in pairs)
        words += len(pairs)
        whole += all(e == g for e, g in pairs)
        touched += restore(Query.parse(question.question), counts, smoothing) is not None
    store.close()
    n = len(questions)
    return {"syllables": right / words, "questions": whole / n, "marked questions touched": touched / n}


def latency(directory: Path) -> dict[str, float]:
    index = TantivyIndex.open(directory)
    if index is None:
        raise SystemExit(f"no current tantivy index in {directory}")
    questions = [
        Query.parse(strip_accents(q.question)) for name in SETS for q in read_questions(EVAL / name / "retrieval.jsonl")
    ]
    for query in questions[:50]:  # warm: the spelling cache, the table, the term dictionary's pages
        restore(query, index)
    seconds = []
    for query in questions:
        started = time.perf_counter()
        restore(query, index)
        seconds.append(time.perf_counter() - started)
    ms = np.asarray(seconds) * 1000
    return {
        "passages": len(index),
        "questions": len(ms),
        "p50_ms": float(np.percentile(ms, 50)),
        "p95_ms": float(np.percentile(ms, 95)),
    }


def fusion(name: str) -> list[dict[str, object]]:
    store, encoder = _store(name)
    questions = read_questions(EVAL / name / "retrieval.jsonl")
    rows = []
    shipped = analysis.RESTORED_CONFIDENCE
    try:
        for label, weights, sure in FUSIONS:
            analysis.RESTORED_CONFIDENCE = sure
            retriever = Retriever(store, encoder, fusion=replace(Fusion(), restored_dense_weights=weights))
            report = evaluate(retriever, questions, accent_free=True, progress=False)
            rows.append(
                {
                    "set": name,
                    "fusion": label,
                    "R@1": report.recall[1],
                    "R@5": report.recall[5],
                    "MRR@10": round(report.mrr_at_10, 4),
                    "answer@1": report.extra["answer@1"],
                }
            )
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    finally:
        analysis.RESTORED_CONFIDENCE = shipped
        store.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["accuracy", "latency", "fusion"])
    parser.add_argument("directory", nargs="?", type=Path, help="latency: a tantivy index folder")
    args = parser.parse_args()
    print(json.dumps(machine()))
    if args.what == "accuracy":
        for name in SETS:
            print(name, json.dumps({k: round(v, 4) for k, v in accuracy(Smoothing(), name).items()}))
    elif args.what == "latency":
        directory = args.directory or Settings().data_dir / "bench" / "query" / "default" / DIRECTORY
        print(json.dumps(latency(directory)))
    else:
        for name in SETS:
            fusion(name)


if __name__ == "__main__":
    main()
