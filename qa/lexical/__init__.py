"""Lexical retrieval (BM25) behind one interface: `LexicalIndex` (search, scores for given passages, the derived-index
lifecycle) and a registry. A backend is one module here (`tantivy.py` in the index folder, `milvus.py` in a shared
Milvus) registered in `BACKENDS`, opened through its class's `at` (`qa.derived.Engine`); the terms always come from
the project's own analysis (`analysis.py`), so every backend indexes and asks for the same terms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np

from qa.derived import DerivedIndex, engine_class
from qa.query import Query

if TYPE_CHECKING:
    from qa.schemas import Filters

__all__ = ["BACKENDS", "LexicalHits", "LexicalIndex", "TermStats", "idf", "lexical_engine"]

# backend name → "module:Class"; the class is a `qa.derived.Engine` (`lexical_engine`).
BACKENDS = {
    "tantivy": "qa.lexical.tantivy:TantivyIndex",
    "milvus": "qa.lexical.milvus:MilvusLexicalIndex",
}

# Lucene's (and tantivy's) BM25 parameters.
K1 = 1.2
B = 0.75


def idf(n_docs: int, doc_freq: int) -> float:
    """BM25's inverse document frequency (Lucene's form, never negative)."""
    return math.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


class LexicalHits(NamedTuple):
    """The best matches of a question, best first: `keys` int64 and `scores` float32; `bound` is the best score
    possible for the question (sum over its terms found in the index of weight * idf * (k1 + 1)), so that
    scores / bound is an absolute 0..1 measure of lexical match."""

    keys: np.ndarray
    scores: np.ndarray
    bound: float


class LexicalIndex(DerivedIndex, Protocol):
    def __len__(self) -> int: ...

    def search(
        self, query: Query, k: int, allowed: np.ndarray | None = None, *, filters: Filters | None = None
    ) -> LexicalHits:
        """The top `k` passages sharing a term with `query`, optionally only among `allowed` keys (a local index) or
        the rows passing `filters` (a shared one, which filters by itself)."""
        ...

    def snapshot(self) -> LexicalIndex:
        """This index as searches see it now, for reads that stay there whatever is published later (a shared one
        gives itself: every replica reads the latest)."""
        ...

    def scores_for(self, query: Query, keys: Sequence[int]) -> np.ndarray:
        """BM25 (float32) of `query` for each of `keys`; 0 for a key that shares no term or is not indexed."""
        ...

    def doc_freqs(self, field: str, terms: Sequence[str]) -> list[int]:
        """How many passages hold each of `terms` in `field` ("syllables", "phrases", or "folded"; a backend whose
        counts the database keeps, "folded" unigrams only)."""
        ...


class TermStats(Protocol):
    """Passage counts per term that the database keeps for an engine that gives none a client can read."""

    def n_docs(self) -> int: ...

    def doc_freqs(self, field: str, terms: Sequence[str]) -> list[int]: ...


def lexical_engine(name: str) -> Any:
    """The class of the lexical backend `name` (a `qa.derived.Engine`); ValueError for an unknown one."""
    engine = engine_class(BACKENDS, name)
    if engine is None:
        raise ValueError(f"unknown lexical backend {name!r}; known: {', '.join(BACKENDS)}")
    return engine
