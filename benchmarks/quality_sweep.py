"""Offline sweep of ranking variants on the eval sets: the round-3 table of benchmarks/quality.md.

For every question the retriever's own candidate pool is taken once (dense top-50 ∪ BM25 top-50, each candidate
with its passage cosine and BM25), plus each candidate's stored sentence vectors; every variant then re-ranks
that pool in numpy exactly as `Fusion.combine` does (z-scores over the pool) and is scored by context:
R@1 / R@5 (one hit per context, as `qa eval`). The default row reproduces `qa eval` up to the query engine's
batch rounding.

Run: `.venv/bin/python -m benchmarks.quality_sweep` (reads evalsets/; ~3 min on 2 cores once the eval
indexes are cached under embeddings/eval-cache/, which `qa eval` or this script builds).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from benchmarks.common import EVAL
from qa.chunking import CHUNKING
from qa.config import Settings
from qa.encoders import load_encoder
from qa.eval import build_index, read_questions
from qa.query import Query
from qa.retriever import Retriever
from qa.text import strip_accents, tokenize

SETS = {  # name: (contexts, questions, accents stripped)
    "MLQA-vi": ("mlqa_vi_dev/contexts.jsonl", "mlqa_vi_dev/retrieval.jsonl", False),
    "XQuAD-vi": ("xquad_vi/contexts.jsonl", "xquad_vi/retrieval.jsonl", False),
    "XQuAD-vi unaccented": ("xquad_vi/contexts.jsonl", "xquad_vi/retrieval.jsonl", True),
    "MLQA-vi unaccented": ("mlqa_vi_dev/contexts.jsonl", "mlqa_vi_dev/retrieval.jsonl", True),
    "XQuAD English": ("xquad_vi/contexts.jsonl", "xquad_vi/retrieval_en.jsonl", False),
}


@dataclass
class Pool:
    gold: str
    contexts: list[str]  # per candidate: its context (article) id
    weight: float  # the dense weight the retriever uses for this question
    cos: np.ndarray
    bm25: np.ndarray
    sentences: list[np.ndarray]  # per candidate: cosine of each of its sentences
    idf: dict[str, float]  # question syllables → idf (accented field)
    sentence_terms: list[list[set[str]]]  # per candidate, per sentence: its syllables
    title_terms: list[set[str]]


def z(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 0 else np.zeros_like(x)


def pools_for(name: str, encoder, settings: Settings) -> list[Pool]:
    contexts, questions_file, stripped = SETS[name]
    store = build_index(EVAL / contexts, encoder, chunking=CHUNKING, cache_dir=settings.data_dir / "eval-cache")
    try:
        retriever = Retriever(store, encoder)
        questions = read_questions(EVAL / questions_file)
        texts = [strip_accents(q.question) if stripped else q.question for q in questions]
        queries = [Query.parse(t) for t in texts]
        rankings, vectors = retriever._candidates(queries, retriever.candidates, None)
        ranked = [r.candidates for r in rankings]
        assert vectors is not None
        keys = sorted({c.key for row in ranked for c in row})
        records = store.passages_by_key(keys)
        stored = store.sentence_vectors(keys=keys)
        if len(stored) < len(keys):
            sys.exit(f"{name}: the cached eval index has no sentence vectors (QA_SENTENCE_VECTORS=false?)")
        n_docs = len(store.lexical)
        terms = {k: [set(tokenize(r.passage.text[a:b])) for a, b in r.passage.sentences] for k, r in records.items()}
        pools = []
        for question, query, vector, row in zip(questions, queries, vectors, ranked, strict=True):
            idf = {}
            for term in dict.fromkeys(tokenize(query.text)):
                df = store.lexical.doc_freqs("syllables", [term])[0]
                idf[term] = math.log(1 + (n_docs - df + 0.5) / (df + 0.5)) if df > 0 else 0.0
            pools.append(
                Pool(
                    gold=question.context_id,
                    contexts=[records[c.key].article.id for c in row],
                    weight=retriever.fusion.weight_for(query),
                    cos=np.array([c.dense_score for c in row]),
                    bm25=np.array([c.lexical_score or 0.0 for c in row]),
                    sentences=[stored[c.key] @ vector for c in row],
                    idf=idf,
                    sentence_terms=[terms[c.key] for c in row],
                    title_terms=[set(tokenize(records[c.key].article.title)) for c in row],
                )
            )
        return pools
    finally:
        store.close()


def recall(pools: list[Pool], score: Callable[[Pool], np.ndarray]) -> tuple[float, float]:
    r1 = r5 = 0
    for pool in pools:
        ranked: list[str] = []
        for i in np.argsort(-score(pool), kind="stable"):
            if pool.contexts[i] not in ranked:
                ranked.append(pool.contexts[i])
        rank = ranked.index(pool.gold) + 1 if pool.gold in ranked else None
        r1 += rank == 1
        r5 += rank is not None and rank <= 5
    return r1 / len(pools), r5 / len(pools)


def base(p: Pool) -> np.ndarray:
    return p.weight * z(p.cos) + (1 - p.weight) * z(p.bm25)


def best(p: Pool) -> np.ndarray:
    return np.array([s.max() for s in p.sentences])


def top2(p: Pool) -> np.ndarray:
    return np.array([np.sort(s)[::-1][:2].mean() for s in p.sentences])


def coverage(p: Pool, window: int) -> np.ndarray:
    """The question's idf mass found in the passage's best run of `window` sentences (a proximity signal)."""
    total = sum(p.idf.values()) or 1.0
    out = []
    for sentences in p.sentence_terms:
        runs = [set().union(*sentences[i : i + window]) for i in range(len(sentences))] or [set()]
        out.append(max(sum(v for t, v in p.idf.items() if t in run) for run in runs) / total)
    return np.array(out)


def title_coverage(p: Pool) -> np.ndarray:
    total = sum(p.idf.values()) or 1.0
    return np.array([sum(v for t, v in p.idf.items() if t in title) / total for title in p.title_terms])


VARIANTS: list[tuple[str, Callable[[Pool], np.ndarray]]] = [
    ("passage cosine alone", lambda p: p.cos),
    ("best sentence cosine alone", best),
    ("round 2: w z(cos) + (1-w) z(bm25)", base),
    *[
        (f"+ {g} z(best sentence){' (default)' if g == 0.2 else ''}", lambda p, g=g: base(p) + g * z(best(p)))
        for g in (0.1, 0.15, 0.2, 0.25, 0.3, 0.5)
    ],
    ("+ 0.2 z(mean of the best 2 sentences)", lambda p: base(p) + 0.2 * z(top2(p))),
    (
        "dense = cos + 0.5 best sentence, inside w",
        lambda p: p.weight * z(p.cos + 0.5 * best(p)) + (1 - p.weight) * z(p.bm25),
    ),  # fmt: skip
    ("+ 0.1 z(idf coverage of the best sentence)", lambda p: base(p) + 0.1 * z(coverage(p, 1))),
    ("+ 0.1 z(idf coverage of the best 2 sentences)", lambda p: base(p) + 0.1 * z(coverage(p, 2))),
    ("+ 0.1 z(idf coverage of the title)", lambda p: base(p) + 0.1 * z(title_coverage(p))),
]


def main() -> None:
    settings = Settings()
    encoder = load_encoder(settings)
    pools = {name: pools_for(name, encoder, settings) for name in SETS}
    print("| variant | " + " | ".join(f"{name} R@1 / R@5" for name in SETS) + " |")
    print("|---|" + "---|" * len(SETS))
    for label, score in VARIANTS:
        cells = [recall(pools[name], score) for name in SETS]
        print(f"| {label} | " + " | ".join(f"{r1:.3f} / {r5:.3f}" for r1, r5 in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
