"""BM25 in Milvus (`QA_LEXICAL_BACKEND=milvus`): Milvus's BM25 function and sparse inverted index over the project's
own terms (`qa.lexical.analysis`), in a collection every replica shares (`qa.milvus`).

Each of the three fields (syllables, phrases, folded) is a VARCHAR that Milvus's `standard` analyzer reads and a BM25
function turns into a sparse vector, scored with Lucene's k1 and b as tantivy does. The terms are written so that the
standard tokenizer keeps each one whole: a bigram's "_" already joins (Unicode word rules), and a syllable holding
anything but Latin letters and digits ("1,5", "20%", "3/4", other scripts) is written as "__x" and its UTF-8 bytes in
hex. A question is scored as with tantivy: BM25(syllables) + `PHRASE_WEIGHT` * BM25(phrases), or BM25(folded) for
one without tone marks; the fields' best are gathered in one hybrid search, then the union is scored exactly in a
second. Milvus keeps no per-term counts a client can read, so the database keeps them (`qa.storage.terms`, in
`qa.database.term_stats`), handed over as `Site.term_stats`: they give the answer's idf weights, the bound of
lexical-only scores (over the unigram terms alone) and the counts tone-mark restoration reads (`qa.restore`: accented
syllables and pairs).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from functools import lru_cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from qa import milvus
from qa.derived import PassageRow
from qa.lexical import K1, B, LexicalHits, TermStats, idf
from qa.lexical.analysis import PHRASE_WEIGHT, QueryTerms, passage_terms, query_terms
from qa.query import Query

if TYPE_CHECKING:
    from qa.derived import Site
    from qa.schemas import Filters

log = logging.getLogger(__name__)

FIELDS = ("syllables", "phrases", "folded")
MAX_TEXT = 65_535  # bytes of a VARCHAR: a passage's terms stay far below it (chunks are a few hundred words)
_INSERT_BATCH = 1_000
_SEARCH_LIMIT = 16_384
_EMPTY = LexicalHits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), 0.0)


@lru_cache(maxsize=1 << 16)
def _syllable(token: str) -> str:
    if all(c.isdigit() and c.isascii() or (c.isalpha() and "LATIN" in unicodedata.name(c, "")) for c in token):
        return token
    return "__x" + token.encode().hex()


def milvus_term(term: str) -> str:
    """`term` as the standard tokenizer keeps it whole (see the module's docstring); one-to-one."""
    return "_".join(_syllable(part) for part in term.split("_"))


def _text(terms: Sequence[str]) -> str:
    text = " ".join(milvus_term(t) for t in terms)
    if len(text.encode()) > MAX_TEXT:  # never with the service's chunking; cut at a term boundary if it ever were
        text = text.encode()[:MAX_TEXT].decode(errors="ignore").rsplit(" ", 1)[0]
    return text


class MilvusLexicalIndex(milvus.Collection):
    """A Milvus collection of passages' terms, scored by BM25; thread-safe."""

    backend = "milvus"
    term_stats_in_database = True  # `Site.term_stats`

    def __init__(self, uri: str, collection: str, stats: TermStats, *, directory: Path) -> None:
        super().__init__(uri, collection, directory=directory)
        self.stats = stats

    @classmethod
    def attach(
        cls, uri: str | None, prefix: str, index_id: str, stats: TermStats, *, directory: Path, fresh: bool
    ) -> MilvusLexicalIndex:
        """The index's collection (`milvus.Collection.open`)."""
        from pymilvus import DataType, Function, FunctionType

        uri = milvus.resolve_uri(uri, directory)
        self = cls(uri, milvus.collection_name(prefix, index_id, milvus.BM25_SUFFIX), stats, directory=directory)

        def define(client: Any) -> tuple[Any, Any]:
            schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("key", DataType.INT64, is_primary=True)
            milvus.add_article_fields(schema)
            index_params = client.prepare_index_params()
            for field in FIELDS:
                schema.add_field(
                    field,
                    DataType.VARCHAR,
                    max_length=MAX_TEXT,
                    enable_analyzer=True,
                    analyzer_params={"type": "standard"},
                )
                schema.add_field(f"{field}_bm25", DataType.SPARSE_FLOAT_VECTOR)
                schema.add_function(
                    Function(
                        name=f"{field}_bm25",
                        function_type=FunctionType.BM25,
                        input_field_names=[field],
                        output_field_names=[f"{field}_bm25"],
                    )
                )
                index_params.add_index(
                    field_name=f"{field}_bm25",
                    index_type="SPARSE_INVERTED_INDEX",
                    metric_type="BM25",
                    params={"bm25_k1": K1, "bm25_b": B},
                )
            return schema, index_params

        self.open(fresh, define)
        return self

    @staticmethod
    def collection_at(site: Site) -> str:
        return milvus.collection_name(site.vectors.milvus_collection, site.index_id, milvus.BM25_SUFFIX)

    @classmethod
    def at(cls, site: Site, *, fresh: bool, size: int) -> MilvusLexicalIndex:
        assert site.term_stats is not None, "the database keeps this engine's term counts"
        prefix = site.vectors.milvus_collection
        return cls.attach(
            site.vectors.milvus_uri, prefix, site.index_id, site.term_stats, directory=site.directory, fresh=fresh
        )

    # --- the derived-index lifecycle ----------------------------------------------------------------------------
    def apply(self, removed: Sequence[int], added: Sequence[PassageRow], *, publish: bool = True) -> None:
        keys = [int(k) for k in removed]
        for start in range(0, len(keys), _INSERT_BATCH):
            ids = keys[start : start + _INSERT_BATCH]
            milvus.call(self, "delete passages", partial(self._client.delete, self.collection, ids=ids))
        for start in range(0, len(added), _INSERT_BATCH):
            rows = []
            for row in added[start : start + _INSERT_BATCH]:
                terms = passage_terms(row.text)
                rows.append(
                    {
                        **milvus.row_fields(row),
                        "syllables": _text(terms.syllables),
                        "phrases": _text(terms.phrases),
                        "folded": _text(terms.folded),
                    }
                )
            milvus.call(self, "store passages", partial(self._client.upsert, self.collection, rows))

    # --- reads --------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.stats.n_docs()

    def snapshot(self) -> MilvusLexicalIndex:
        return self

    def search(
        self, query: Query, k: int, allowed: np.ndarray | None = None, *, filters: Filters | None = None
    ) -> LexicalHits:
        terms = query_terms(query)
        requests = _requests(terms)
        if not requests or k <= 0 or (allowed is not None and not len(allowed)):
            return _EMPTY
        keys = None if allowed is None else np.unique(allowed).tolist()
        expression = milvus.filter_expression(filters, keys)
        limit = min(k, _SEARCH_LIMIT)
        found, scores = self._hybrid(requests, expression, limit, limit * len(requests))
        if len(requests) > 1 and len(found):  # a key among one field's best but not another's: scored exactly
            scores = self.scores_for(query, found.tolist())
            order = np.argsort(-scores, kind="stable")[:limit]
            found, scores = found[order], scores[order]
        else:
            found, scores = found[:limit], scores[:limit]
        return LexicalHits(found, scores, self._bound(terms))

    def scores_for(self, query: Query, keys: Sequence[int]) -> np.ndarray:
        out = np.zeros(len(keys), dtype=np.float32)
        requests = _requests(query_terms(query))
        if not requests or not len(keys):
            return out
        wanted = [int(k) for k in keys]
        position = {k: i for i, k in enumerate(wanted)}
        for start in range(0, len(wanted), _SEARCH_LIMIT):
            part = wanted[start : start + _SEARCH_LIMIT]
            found, scores = self._hybrid(requests, milvus.filter_expression(None, part), len(part), len(part))
            for key, score in zip(found.tolist(), scores.tolist(), strict=True):
                out[position[key]] = score
        return out

    def doc_freqs(self, field: str, terms: Sequence[str]) -> list[int]:
        return self.stats.doc_freqs(field, terms)

    # --- helpers ------------------------------------------------------------------------------------------------
    def _hybrid(
        self, requests: list[tuple[str, str, float]], expression: str, per_field: int, limit: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """One hybrid search: each field's best `per_field` among the rows passing `expression`, summed with the
        fields' weights (a key missing from a field's list counts 0 there); best `limit` first."""
        from pymilvus import AnnSearchRequest, WeightedRanker

        searches = [
            AnnSearchRequest(data=[text], anns_field=f"{field}_bm25", param={}, limit=per_field, expr=expression)
            for field, text, _ in requests
        ]
        ranker = WeightedRanker(*[weight for _, _, weight in requests], norm_score=False)
        hits: Any = milvus.call(
            self,
            "search passages",
            lambda: self._client.hybrid_search(  # output_fields: none would read every field of every hit
                self.collection, searches, ranker, limit=min(limit, _SEARCH_LIMIT), output_fields=["key"]
            ),
        )
        row = hits[0] if len(hits) else []
        keys = np.asarray([int(h["key"]) for h in row], dtype=np.int64)
        scores = np.asarray([abs(float(h["distance"])) for h in row], dtype=np.float32)
        return keys, scores

    def _bound(self, terms: QueryTerms) -> float:
        n_docs = self.stats.n_docs()
        bound = 0.0
        for field, values in (("syllables", terms.syllables), ("folded", [t for t in terms.folded if "_" not in t])):
            for df in self.stats.doc_freqs(field, list(values)) if values else []:
                if df > 0:
                    bound += idf(n_docs, df) * (K1 + 1.0)
        return bound


def _requests(terms: QueryTerms) -> list[tuple[str, str, float]]:
    """(field, query text, weight) per field the question reads."""
    out = []
    for field, values, weight in (
        ("syllables", terms.syllables, 1.0),
        ("phrases", terms.phrases, PHRASE_WEIGHT),
        ("folded", terms.folded, 1.0),
    ):
        if values:
            out.append((field, _text(values), weight))
    return out
