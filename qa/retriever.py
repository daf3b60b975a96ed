"""The read path: question → dense + lexical candidates → fused, filtered `Hit`s → the answer among the top hits
(`qa.answer`), which also reorders them and highlights each → the page.

Hybrid ranking is by `w * z(dense) + (1 - w) * z(lexical) + 0.2 * z(best sentence)`, each signal standardised
(z-score) over the question's normalisation pool (the top `candidates` of each signal); `w` is 0.5 for a question
with tone marks and 0.3 for one without (the dense model is nearly blind to unaccented Vietnamese). "Best
sentence" is the highest cosine between the question and the passage's sentences, whose vectors the indexer
stores (`QA_SENTENCE_VECTORS`); it is left out when a candidate has none (an index built without them).
`Hit.score` is that fused value min-max scaled over the pool and clipped to [0, 1]: 1.0 is the question's best
candidate, and `min_score` is relative to the question's candidates (0.5 keeps passages at least halfway between
the weakest and the strongest). The raw cosine and BM25 stay on the hit (`dense_score`, `lexical_score`). Chosen over
min-max fusion, absolute normalisations and RRF on both dev sets (benchmarks/quality.md). Another language
(`Query.foreign`) is ranked by the dense signals alone: BM25 over Vietnamese text only adds noise to it. In the
single-signal modes the score is that signal (cosine; BM25 / the question's bound, see `qa.lexical`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from qa.answer import AnswerModel, Evidence
from qa.derived import Scope
from qa.domain import Article, Passage, Span, sentence_inputs
from qa.encoders import Encoder
from qa.lexical import LexicalHits
from qa.query import Query
from qa.restore import Smoothing
from qa.restore import restore as restore_marks
from qa.schemas import Filters
from qa.scoring import scaled, zscores
from qa.store import Store, StoredPassage
from qa.timing import StageObserver, timed

log = logging.getLogger(__name__)

Mode = Literal["hybrid", "dense", "lexical"]
MODES: tuple[Mode, ...] = ("hybrid", "dense", "lexical")
SENTENCE_CACHE_SIZE = 2048  # highlight sentence vectors kept (~3 MB at 384 dimensions)
ANSWER_HITS = 5  # the top hits an answer is chosen from (as many as benchmarks/fit_answer.py fits it on)
# How much the strength of a top hit's best answer candidate moves it among the top hits (benchmarks/quality.md).
RERANK_WEIGHT = 0.2


@dataclass(frozen=True, slots=True)
class Hit:
    key: int  # the store's passage key
    passage: Passage
    article: Article
    score: float
    dense_score: float | None = None
    lexical_score: float | None = None
    highlights: tuple[Span, ...] = ()


@dataclass(frozen=True, slots=True)
class HitAnswer:
    """The sentence (or title) that answers a question, chosen among its top `ANSWER_HITS` hits (`qa.answer`)."""

    hit: Hit  # the hit it comes from: one of the top hits, which may lie before the page asked for
    text: str
    span: Span  # into hit.passage.text, or into hit.article.title when `in_title`
    in_title: bool
    score: float  # the calibrated chance that it holds the answer


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    total: int  # ranked passages that passed the filters (within the candidate pool), before paging
    answer: HitAnswer | None = None  # None: not asked for, or no credible answer among the top hits
    # The top `ANSWER_HITS` hits as the answer selector saw them, in fused order (benchmarks/fit_answer.py fits them).
    evidence: list[Evidence] = field(default_factory=list)
    understood_as: str | None = None  # the question with its tone marks restored (`qa.restore`); None: as typed


@dataclass(frozen=True, slots=True)
class Candidate:
    key: int
    score: float
    dense_score: float | None = None
    lexical_score: float | None = None


@dataclass(slots=True)
class _Ranking:
    """One question's candidates, best first, with the sentence vectors read to rank them (by passage key), so
    highlighting reads only those of the hits it lacks."""

    candidates: list[Candidate]
    sentences: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Fusion:
    """How dense and lexical scores combine; weights chosen on both dev sets (benchmarks/quality.md).
    `unaccented_dense_weight` applies to Vietnamese questions typed without tone marks and read as typed,
    `restored_dense_weight` to those read with their marks restored (`qa.restore`); `sentence_weight` weighs the
    best sentence's cosine, added when every candidate has sentence vectors."""

    dense_weight: float = 0.5
    unaccented_dense_weight: float = 0.3
    restored_dense_weight: float = 0.5
    sentence_weight: float = 0.2

    def __post_init__(self) -> None:
        weights = (self.dense_weight, self.unaccented_dense_weight, self.restored_dense_weight)
        if not all(0.0 <= w <= 1.0 for w in weights):
            raise ValueError("dense weights must be within [0, 1]")
        if not 0.0 <= self.sentence_weight <= 1.0:
            raise ValueError("sentence_weight must be within [0, 1]")

    def weight_for(self, query: Query) -> float:
        """The dense weight of `query`: all of it for another language, less without tone marks."""
        if query.foreign:
            return 1.0
        if query.restoration is not None:
            return self.restored_dense_weight
        return self.dense_weight if query.accented else self.unaccented_dense_weight

    def combine(
        self,
        dense: np.ndarray,
        lexical: np.ndarray,
        pool: np.ndarray,
        dense_weight: float,
        sentence: np.ndarray | None = None,
    ) -> np.ndarray:
        """Fused scores in [0, 1]; `pool` (a boolean mask, not empty) marks the candidates that set the scales."""
        fused = dense_weight * zscores(dense, pool) + (1.0 - dense_weight) * zscores(lexical, pool)
        if sentence is not None and self.sentence_weight:
            fused = fused + self.sentence_weight * zscores(sentence, pool)
        return scaled(fused, pool)


def fuse(
    dense: dict[int, float],
    lexical: dict[int, float] | None,
    pool: set[int],
    fusion: Fusion,
    dense_weight: float | None = None,
    sentence: dict[int, float] | None = None,
) -> list[Candidate]:
    """Candidates of either signal ranked by the fused score; `dense` (and `sentence`, when given) must score
    every candidate of both. `lexical` None: no lexical signal (the hits then carry no lexical score)."""
    keys = list(dense)
    in_pool = np.fromiter((k in pool for k in keys), dtype=bool, count=len(keys))
    if not in_pool.any():
        return []
    cos = np.fromiter((dense[k] for k in keys), dtype=np.float64, count=len(keys))
    bm25 = np.fromiter(((lexical or {}).get(k, 0.0) for k in keys), dtype=np.float64, count=len(keys))
    best = None if sentence is None else np.fromiter((sentence[k] for k in keys), dtype=np.float64, count=len(keys))
    weight = fusion.dense_weight if dense_weight is None else dense_weight
    fused = fusion.combine(cos, bm25, in_pool, weight, best)
    order = np.argsort(-fused, kind="stable")
    if lexical is None:
        return [Candidate(keys[i], float(fused[i]), float(cos[i])) for i in order]
    return [Candidate(keys[i], float(fused[i]), float(cos[i]), float(bm25[i])) for i in order]


def is_empty(filters: Filters) -> bool:
    return all(v is None for v in (filters.published_from, filters.published_to, filters.sources, filters.article_ids))


class Retriever:
    """Dense (FAISS) and lexical (BM25) candidates fused into one ranking; see the module doc for `score`."""

    def __init__(
        self,
        store: Store,
        encoder: Encoder,
        *,
        candidates: int = 50,
        mode: Mode = "hybrid",
        fusion: Fusion | None = None,
        model_highlights: int = 1,
        answers: AnswerModel | None = None,
        smoothing: Smoothing | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        self.store = store
        self.encoder = encoder
        self.candidates = candidates
        self.mode = mode
        self.fusion = fusion or Fusion()
        # Hits with stored sentence vectors are all scored by the model; of those without (an index built
        # without them), how many at the top of each page get their sentences encoded at question time (the
        # rest go without the model's cosine), since encoding at question time is slow (benchmarks/quality.md).
        self.model_highlights = model_highlights
        self.answers = answers or AnswerModel.shipped()
        self.smoothing = smoothing or Smoothing()  # how tone marks are restored (`qa.restore`)
        self._sentence_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._sentence_encoder: Encoder | None = None
        self._sentence_lock = threading.Lock()

    def search(self, question: str, top_k: int = 5, **options: object) -> SearchResult:
        return self.search_many([question], top_k, **options)[0]  # type: ignore[arg-type]

    def search_many(
        self,
        questions: Sequence[str],
        top_k: int = 5,
        *,
        offset: int = 0,
        filters: Filters | None = None,
        min_score: float | None = None,
        one_per_article: bool = False,
        with_highlights: bool = True,
        restore: bool = True,
        stages: StageObserver | None = None,
    ) -> list[SearchResult]:
        """`restore`: a question typed without its tone marks is read with them restored (`qa.restore`)."""
        if top_k < 1 or offset < 0:
            raise ValueError("top_k must be at least 1 and offset at least 0")
        queries = [Query.parse(q) for q in questions]
        scope = self.store.scope(None if filters is None or is_empty(filters) else filters)
        if not queries:
            return []
        if restore:
            with timed(stages, "restore"):
                queries = self._restored(queries, scope)
        # Overlapping passages of one article crowd each other out: fetch enough to fill the page anyway.
        depth = max(self.candidates, (offset + top_k) * 4)
        rankings, vectors = self._candidates(queries, depth, scope, stages)
        ranked = [r.candidates for r in rankings]
        # The top hits are reordered by their answers, and the answer chosen among them, whichever page is asked for.
        want = max(offset + top_k, ANSWER_HITS)
        with timed(stages, "hydrate"):
            leads, totals, records = self._hydrated(ranked, want, min_score, one_per_article)
        known = [r.sentences for r in rankings]
        with timed(stages, "answer"):
            return self._answered(queries, vectors, leads, totals, records, known, offset, top_k, with_highlights)

    def _answered(
        self,
        queries: list[Query],
        vectors: np.ndarray | None,
        leads: list[list[Hit]],
        totals: list[int],
        records: dict[int, StoredPassage],
        known: list[dict[int, np.ndarray]],
        offset: int,
        top_k: int,
        with_highlights: bool,
    ) -> list[SearchResult]:
        """Each page: the top `ANSWER_HITS` hits reordered by their answers (`_reranked`), and, `with_highlights`,
        the highlights of the page and the answer chosen among the top hits (`qa.answer`). Without highlights
        only the top hits are read, for the order (a page's order does not depend on whether it is highlighted)."""
        shown = [lead[: max(offset + top_k, ANSWER_HITS)] for lead in leads]
        scored = shown if with_highlights else [lead[:ANSWER_HITS] for lead in shown]
        cosines = self._sentence_cosines(vectors, scored, known)
        out = []
        for i, (query, lead, total) in enumerate(zip(queries, scored, totals, strict=True)):
            vector = None if vectors is None else vectors[i]
            evidence = [_evidence(h, records[h.key], cosines[i].get(h.key), vector) for h in lead]
            top = self.answers.select(query, evidence[:ANSWER_HITS], self.store.idf)
            spans = dict(zip([h.key for h in lead], top.highlights, strict=False))
            if len(lead) > ANSWER_HITS:  # the page reaches past the answer's hits: their highlights apart
                rest = self.answers.select(query, evidence[ANSWER_HITS:], self.store.idf)
                spans.update(zip([h.key for h in lead[ANSWER_HITS:]], rest.highlights, strict=True))
            ordered = _reranked(shown[i], top.strength)
            hits = [
                Hit(
                    h.key,
                    h.passage,
                    h.article,
                    h.score,
                    h.dense_score,
                    h.lexical_score,
                    () if not with_highlights or spans.get(h.key) is None else (spans[h.key],),  # type: ignore[arg-type]
                )
                for h in ordered
            ]
            answer = None
            if with_highlights and top.answer is not None:
                key = lead[top.answer.hit].key
                hit = next(h for h in hits if h.key == key)
                in_title = top.answer.span is None
                span = (0, len(hit.article.title)) if top.answer.span is None else top.answer.span
                answer = HitAnswer(hit, top.answer.text, span, in_title, top.answer.score)
            restoration = query.restoration
            understood = None if restoration is None else restoration.text
            page = hits[offset : offset + top_k]
            out.append(SearchResult(page, total, answer, evidence[:ANSWER_HITS], understood_as=understood))
        return out

    def _restored(self, queries: list[Query], scope: Scope) -> list[Query]:
        """Each question with its tone marks restored where it lacks them, from the corpus's counts (`qa.restore`)."""
        wanting = [q for q in queries if not q.foreign and q.restoration is None]
        if not wanting:
            return queries
        counts = self.store.term_counts(scope=scope)
        out = []
        for query in queries:
            restoration = restore_marks(query, counts, self.smoothing)
            out.append(query if restoration is None else query.restored(restoration))
        return out

    def _sentence_cosines(
        self, vectors: np.ndarray | None, pages: list[list[Hit]], known: list[dict[int, np.ndarray]]
    ) -> list[dict[int, np.ndarray]]:
        """Per question, the cosine of each sentence of its hits, by passage key. Sentence vectors come from the
        index (`known`: those already read to rank; the others are read here); for hits without any (an index
        built without them), only the top `model_highlights` of each question are encoded, in one batch for the
        whole request; the rest go without the model's signal. Empty in lexical mode."""
        if vectors is None:
            return [{} for _ in pages]
        stored = {key: v for have in known for key, v in have.items()}
        missing = [h.key for page in pages for h in page if h.key not in stored]
        if missing:
            stored.update(self.store.sentence_vectors(keys=missing))
        unencoded = [h for page in pages for h in page[: self.model_highlights] if h.key not in stored]
        texts = [t for h in unencoded for t in sentence_inputs(h.article.title, h.passage)]
        if texts:
            encoded, row = self._sentence_vectors(texts), 0
            for h in unencoded:
                n = len(h.passage.sentences)
                stored[h.key], row = encoded[row : row + n], row + n
        return [
            {h.key: stored[h.key] @ vector for h in page if h.key in stored}
            for page, vector in zip(pages, vectors, strict=True)
        ]

    def _sentence_vectors(self, texts: list[str]) -> np.ndarray:
        """Vectors of highlight sentences ("title\nsentence"): the misses encoded in one batch, the rest from a
        small LRU (the same top passages come back for related questions)."""
        with self._sentence_lock:
            if self._sentence_encoder is not self.encoder:
                self._sentence_cache.clear()
                self._sentence_encoder = self.encoder
            cached = {t: self._sentence_cache[t] for t in texts if t in self._sentence_cache}
        misses = list(dict.fromkeys(t for t in texts if t not in cached))
        if misses:
            encoded = self.encoder.encode_passages(misses, batch_size=64)
            fresh = dict(zip(misses, encoded, strict=True))
            cached.update(fresh)
            with self._sentence_lock:
                self._sentence_cache.update(fresh)
                while len(self._sentence_cache) > SENTENCE_CACHE_SIZE:
                    self._sentence_cache.popitem(last=False)
        with self._sentence_lock:
            for t in cached:
                if t in self._sentence_cache:
                    self._sentence_cache.move_to_end(t)
        return np.stack([cached[t] for t in texts])

    def _candidates(
        self, queries: list[Query], depth: int, scope: Scope, stages: StageObserver | None = None
    ) -> tuple[list[_Ranking], np.ndarray | None]:
        """Each question's ranking, and the question vectors (None in lexical mode)."""
        if self.mode == "lexical":
            with timed(stages, "lexical"):
                found = [self.store.search_lexical(q, depth, scope=scope) for q in queries]
            return [_Ranking(_lexical_only(hits)) for hits in found], None
        with timed(stages, "encode"):
            vectors = self.encoder.encode_queries([q.text for q in queries])
        with timed(stages, "dense"):
            scores, keys = self.store.search(vectors, depth, scope=scope)
        dense_rows = [
            {int(k): float(s) for s, k in zip(srow, krow, strict=True) if k >= 0}
            for srow, krow in zip(scores, keys, strict=True)
        ]
        if self.mode == "dense":
            return [_Ranking([Candidate(k, s, dense_score=s) for k, s in row.items()]) for row in dense_rows], vectors
        with timed(stages, "lexical"):
            return [
                self._hybrid(query, vector, dense, depth, scope)
                for query, vector, dense in zip(queries, vectors, dense_rows, strict=True)
            ], vectors

    def _hybrid(self, query: Query, vector: np.ndarray, dense: dict[int, float], depth: int, scope: Scope) -> _Ranking:
        if query.foreign:
            stored = self._stored_sentences(dense)
            if stored is None:
                return _Ranking([Candidate(k, s, dense_score=s) for k, s in dense.items()])
            pool = set(list(dense)[: self.candidates])
            return _Ranking(fuse(dense, None, pool, self.fusion, 1.0, _best(stored, vector, dense)), stored)
        matches = self.store.search_lexical(query, depth, scope=scope)
        top_lexical = matches.keys.tolist()
        missing = [k for k in top_lexical if k not in dense]
        # A lexical-only candidate gets its exact cosine, so both signals score every candidate.
        for key, score in zip(missing, self.store.dense_scores(vector, missing).tolist(), strict=True):
            if score == score:  # NaN: removed between the two searches
                dense[key] = score
        # The scale comes from a fixed pool, so paging deeper (a larger depth) never reorders earlier pages.
        pool = set(list(dense)[: self.candidates]) | set(top_lexical[: self.candidates])
        # BM25 of every candidate: the dense-only ones asked of the engine (0 where they share no term).
        lexical = dict(zip(top_lexical, matches.scores.tolist(), strict=True))
        others = [k for k in dense if k not in lexical]
        lexical.update(zip(others, self.store.lexical_scores(query, others).tolist(), strict=True))
        stored = self._stored_sentences(dense)
        sentence = None if stored is None else _best(stored, vector, dense)
        ranked = fuse(dense, lexical, pool & dense.keys(), self.fusion, self.fusion.weight_for(query), sentence)
        return _Ranking(ranked, stored or {})

    def _stored_sentences(self, dense: dict[int, float]) -> dict[int, np.ndarray] | None:
        """The candidates' sentence vectors, or None (no sentence signal) unless every candidate has them."""
        if not self.fusion.sentence_weight or not dense:
            return None
        stored = self.store.sentence_vectors(keys=list(dense))
        if len(stored) < len(dense):  # indexed without them (QA_SENTENCE_VECTORS=false)
            return None
        return stored

    def _hydrated(
        self, ranked: list[list[Candidate]], want: int, min_score: float | None, one_per_article: bool
    ) -> tuple[list[list[Hit]], list[int], dict[int, StoredPassage]]:
        """Each row's hits (its first `want`; all of them, one per article, with `one_per_article`), its total, and
        the records read, fetching records only for the candidates that can reach the hits.

        Candidates are fetched in rounds (one query for all rows per round) until each row holds `want` hits: a
        passage deleted between search and lookup makes room for the next. `total` counts the ranked
        candidates at or above `min_score`, less the deleted ones seen (and, one per article, the hits).
        """
        limits = []
        for row in ranked:
            n = len(row)
            if min_score is not None:
                n = next((i for i, c in enumerate(row) if c.score < min_score), n)
            limits.append(n)
        hits: list[list[Hit]] = [[] for _ in ranked]
        articles: list[set[str]] = [set() for _ in ranked]
        seen = [0] * len(ranked)  # candidates looked up so far, per row
        gone = [0] * len(ranked)  # of which deleted
        records: dict[int, StoredPassage] = {}
        while True:
            batch = [
                row[seen[i] : limits[i] if one_per_article else min(seen[i] + want - len(hits[i]), limits[i])]
                for i, row in enumerate(ranked)
            ]
            if not any(batch):
                break
            records.update(self.store.passages_by_key(sorted({c.key for part in batch for c in part} - records.keys())))
            for i, part in enumerate(batch):
                for c in part:
                    record = records.get(c.key)
                    if record is None:  # deleted between search and lookup
                        gone[i] += 1
                        continue
                    if one_per_article:
                        if record.article.id in articles[i]:
                            continue
                        articles[i].add(record.article.id)
                    hits[i].append(_hit(c, record))
                seen[i] += len(part)
        if one_per_article:
            return hits, [len(row) for row in hits], records
        return hits, [limit - g for limit, g in zip(limits, gone, strict=True)], records


def _evidence(hit: Hit, record: StoredPassage, cosines: np.ndarray | None, vector: np.ndarray | None) -> Evidence:
    """`hit` as the answer selector sees it: `cosines` its sentences' with the question vector `vector` (None in
    lexical mode), the title's cosine when the index stores title vectors, the readings the index stores."""
    title = None if vector is None or record.title_vector is None else float(record.title_vector @ vector)
    return Evidence(hit.passage, hit.article.title, hit.score, cosines, title, record.decoded_readings())


def _hit(candidate: Candidate, record: StoredPassage) -> Hit:
    c = candidate
    return Hit(c.key, record.passage, record.article, c.score, c.dense_score, c.lexical_score)


def _reranked(hits: list[Hit], strength: Sequence[float | None]) -> list[Hit]:
    """`hits` with the top ones (one `strength` each: the utility of its best answer candidate, None for none)
    reordered by score + `RERANK_WEIGHT` * (strength - the strongest): a top hit whose passage holds a strong
    answer rises among them. Each takes that value as its score, but no lower than the lowest score they had, so
    they stay above the rest (and above `min_score`)."""
    top, rest = hits[: len(strength)], hits[len(strength) :]
    known = [s for s in strength if s is not None]
    if not known:
        return hits
    strongest = max(known)
    keyed = [
        (h.score + RERANK_WEIGHT * ((strongest if s is None else s) - strongest), h)
        for h, s in zip(top, strength, strict=True)
    ]
    keyed.sort(key=lambda pair: -pair[0])
    floor = min(h.score for h in top)
    return [replace(h, score=max(floor, value)) for value, h in keyed] + rest


def _best(stored: dict[int, np.ndarray], vector: np.ndarray, dense: dict[int, float]) -> dict[int, float]:
    """Each candidate's best sentence cosine (its passage cosine when it has no sentence)."""
    return {k: float((v @ vector).max()) if len(v) else dense[k] for k, v in stored.items()}


def _lexical_only(hits: LexicalHits) -> list[Candidate]:
    bound = hits.bound or 1.0
    keys, scores = hits.keys.tolist(), hits.scores.tolist()
    return [Candidate(k, s / bound, lexical_score=s) for k, s in zip(keys, scores, strict=True)]
