"""The read path: question → candidates → ranked, filtered, paged, highlighted `Hit`s."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from qa.chunking import Passage
from qa.corpus import Article
from qa.encoders import Encoder
from qa.highlight import highlight
from qa.store import Store, StoredPassage
from qa.text import normalize

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Filters:
    """Restrictions on which articles may answer; every given field must hold."""

    published_from: datetime | None = None
    published_to: datetime | None = None
    sources: tuple[str, ...] | None = None
    article_ids: tuple[str, ...] | None = None

    def is_empty(self) -> bool:
        return all(v is None for v in (self.published_from, self.published_to, self.sources, self.article_ids))


@dataclass(frozen=True, slots=True)
class Hit:
    passage: Passage
    article: Article
    score: float
    dense_score: float | None = None
    lexical_score: float | None = None
    highlights: tuple[tuple[int, int], ...] = ()


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    total: int  # ranked passages that passed the filters (within the candidate pool), before paging


@dataclass(frozen=True, slots=True)
class Candidate:
    key: int
    score: float
    dense_score: float | None = None
    lexical_score: float | None = None


class Retriever:
    """Dense retrieval over the store; lexical candidates and fusion plug in at `_candidates`."""

    def __init__(self, store: Store, encoder: Encoder, *, candidates: int = 50) -> None:
        self.store = store
        self.encoder = encoder
        self.candidates = candidates

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
    ) -> list[SearchResult]:
        if top_k < 1 or offset < 0:
            raise ValueError("top_k must be at least 1 and offset at least 0")
        cleaned = [normalize(q).strip() for q in questions]
        if not cleaned:
            return []
        allowed = None
        if filters is not None and not filters.is_empty():
            allowed = self.store.keys_matching(
                published_from=filters.published_from,
                published_to=filters.published_to,
                sources=filters.sources,
                article_ids=filters.article_ids,
            )
        # Overlapping passages of one article crowd each other out: fetch enough to fill the page anyway.
        depth = max(self.candidates, (offset + top_k) * 4)
        ranked = self._candidates(cleaned, depth, allowed)
        records = self.store.passages_by_key(sorted({c.key for row in ranked for c in row}))
        results = []
        for question, row in zip(cleaned, ranked, strict=True):
            hits = self._assemble(row, records, min_score, one_per_article)
            page = hits[offset : offset + top_k]
            if with_highlights:
                page = [_with_highlights(question, h) for h in page]
            results.append(SearchResult(hits=page, total=len(hits)))
        return results

    def _candidates(self, questions: list[str], depth: int, allowed: np.ndarray | None) -> list[list[Candidate]]:
        """Ranked candidates per question, best first."""
        vectors = self.encoder.encode_queries(questions)
        scores, keys = self.store.search(vectors, depth, allowed=allowed)
        return [
            [Candidate(int(k), float(s), dense_score=float(s)) for s, k in zip(srow, krow, strict=True) if k >= 0]
            for srow, krow in zip(scores, keys, strict=True)
        ]

    @staticmethod
    def _assemble(
        row: list[Candidate],
        records: dict[int, StoredPassage],
        min_score: float | None,
        one_per_article: bool,
    ) -> list[Hit]:
        hits: list[Hit] = []
        seen_articles: set[str] = set()
        for c in row:
            record = records.get(c.key)
            if record is None:  # deleted between search and lookup
                continue
            if min_score is not None and c.score < min_score:
                break
            if one_per_article:
                if record.article.id in seen_articles:
                    continue
                seen_articles.add(record.article.id)
            hits.append(Hit(record.passage, record.article, c.score, c.dense_score, c.lexical_score))
        return hits


def _with_highlights(question: str, hit: Hit) -> Hit:
    return Hit(
        hit.passage, hit.article, hit.score, hit.dense_score, hit.lexical_score, highlight(question, hit.passage)
    )
