"""Tone-mark restoration on the eval sets (benchmarks/quality.md, "Tone-mark restoration"): how well the questions'
marks are restored, how long a restoration takes, and which fusion weights restored questions get.

- `accuracy`: every question asked without its marks, restored from the set's own cached index (tantivy counts, no
  model call), compared syllable by syllable with the original, for each `Smoothing` given (default: the shipped
  one); also how many marked questions would be touched (none should be).
- `latency LEXICAL_DIR`: the restore call alone, p50/p95 over every eval question, on a built tantivy index (the
  100k-passage one of `benchmarks/bench_query.py` is `embeddings/bench/query/default/lexical`).
- `fusion`: `qa eval --strip-accents` (R@1, R@5, MRR@10, answer@1) on both sets for each candidate way of ranking
  restored questions (their dense weight, by confidence band; their sure syllables also asked of the accented
  fields, which the shipped analysis does not do), to fit on one set and confirm on the other.

Run: `.venv/bin/python -m benchmarks.restore_sweep accuracy|latency DIR|fusion` (reads evalsets/; the eval indexes
are built under embeddings/eval-cache/ once, as `qa eval` builds them).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.common import EVAL, machine
from qa.chunking import CHUNKING
from qa.config import Settings
from qa.encoders import load_encoder
from qa.eval import build_index, evaluate, read_questions
from qa.lexical import tantivy
from qa.lexical.analysis import QueryTerms, bigrams_of, query_terms
from qa.lexical.tantivy import DIRECTORY, TantivyIndex
from qa.query import Query
from qa.restore import Smoothing, restore
from qa.retriever import Fusion, Retriever
from qa.text import canonical_tones, strip_accents, tokenize

SETS = ("xquad_vi", "mlqa_vi_dev")
# (label, restored questions' dense weight by least restoration confidence, most confident band first; least
# confidence of a restored syllable also asked of the accented fields, None: the accent-free field alone)
FUSIONS: list[tuple[str, tuple[tuple[float, float], ...], float | None]] = [
    ("w 0.3", ((0.0, 0.3),), None),
    ("w 0.5 (shipped)", ((0.0, 0.5),), None),
    ("w 0.6", ((0.0, 0.6),), None),
    ("confidence ≥ 0.5: 0.5, else 0.3", ((0.5, 0.5), (0.0, 0.3)), None),
    ("confidence ≥ 0.5: 0.6, else 0.4", ((0.5, 0.6), (0.0, 0.4)), None),
    ("w 0.5, syllables ≥ 0.7 sure also in the accented fields", ((0.0, 0.5),), 0.7),
    ("w 0.5, syllables ≥ 0.95 sure also in the accented fields", ((0.0, 0.5),), 0.95),
]


@dataclass(frozen=True, slots=True)
class BandedFusion(Fusion):
    """A restored question's dense weight by the band its restoration's confidence falls in."""

    bands: tuple[tuple[float, float], ...] = ((0.0, 0.5),)

    def weight_for(self, query: Query) -> float:
        if query.restoration is None:
            return Fusion.weight_for(self, query)
        return next(w for floor, w in self.bands if query.restoration.confidence >= floor)


def sure_terms(threshold: float) -> Callable[[Query], QueryTerms]:
    """`query_terms`, with a restored question's syllables restored at least `threshold` sure (and the pairs of
    them) also asked of the accented fields."""

    def terms(query: Query) -> QueryTerms:
        shipped = query_terms(query)
        if query.restoration is None:
            return shipped
        sure = [canonical_tones(w.text).lower() if w.confidence >= threshold else "" for w in query.restoration.words]
        pairs = [p for p in bigrams_of(sure) if not p.startswith("_") and not p.endswith("_")]
        return QueryTerms(tuple(dict.fromkeys(s for s in sure if s)), tuple(dict.fromkeys(pairs)), shipped.folded)

    return terms


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
    try:
        for label, bands, sure in FUSIONS:
            tantivy.query_terms = query_terms if sure is None else sure_terms(sure)  # type: ignore[assignment]
            retriever = Retriever(store, encoder, fusion=BandedFusion(bands=bands))
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
        tantivy.query_terms = query_terms
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
