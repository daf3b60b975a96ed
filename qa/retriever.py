"""The read path: question → candidates → fused, filtered, highlighted `Hit`s."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from qa.chunking import Passage
from qa.corpus import Article
from qa.encoders import Encoder
from qa.highlight import highlight
from qa.store import Store, StoredPassage
from qa.text import normalize

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Hit:
    passage: Passage
    article: Article
    score: float
    dense_score: float | None = None
    lexical_score: float | None = None
    highlights: tuple[tuple[int, int], ...] = ()


class Retriever:
    """Dense retrieval over the store. Lexical candidates and fusion plug in at `_candidates`."""

    def __init__(self, store: Store, encoder: Encoder, *, candidates: int = 50) -> None:
        self.store = store
        self.encoder = encoder
        self.candidates = candidates

    def search(self, question: str, top_k: int = 5, *, one_per_article: bool = False) -> list[Hit]:
        return self.search_many([question], top_k, one_per_article=one_per_article)[0]

    def search_many(
        self, questions: Sequence[str], top_k: int = 5, *, one_per_article: bool = False
    ) -> list[list[Hit]]:
        if top_k < 1:
            raise ValueError("top_k must be at least 1")
        cleaned = [normalize(q).strip() for q in questions]
        if not cleaned:
            return []
        vectors = self.encoder.encode_queries(cleaned)
        # Overlapping passages of one article crowd each other out: fetch enough to fill top_k anyway.
        depth = max(self.candidates, top_k * 4)
        scores, keys = self.store.search(vectors, depth)
        wanted = {int(k) for k in keys.ravel() if k >= 0}
        records = self.store.passages_by_key(sorted(wanted))
        return [
            self._rank(question, row_scores, row_keys, records, top_k, one_per_article)
            for question, row_scores, row_keys in zip(cleaned, scores, keys, strict=True)
        ]

    @staticmethod
    def _rank(
        question: str,
        scores: np.ndarray,
        keys: np.ndarray,
        records: dict[int, StoredPassage],
        top_k: int,
        one_per_article: bool,
    ) -> list[Hit]:
        hits: list[Hit] = []
        seen_articles: set[str] = set()
        for score, key in zip(scores, keys, strict=True):
            record = records.get(int(key))
            if record is None:  # deleted between search and lookup
                continue
            if one_per_article:
                if record.article.id in seen_articles:
                    continue
                seen_articles.add(record.article.id)
            hits.append(
                Hit(
                    passage=record.passage,
                    article=record.article,
                    score=float(score),
                    dense_score=float(score),
                    highlights=highlight(question, record.passage),
                )
            )
            if len(hits) == top_k:
                break
        return hits
