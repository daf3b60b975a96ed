"""BM25 on tantivy: segments on disk (memory-mapped), deletes and adds in place, top-k pruned in Rust.

The project's analysis (`qa.lexical.analysis`) makes the terms; tantivy indexes them as they are (whitespace
tokenizer, term frequencies, no positions) in three fields, and a question is one boolean query of its terms, the
phrase terms boosted by `PHRASE_WEIGHT`. tantivy scores BM25 with Lucene's k1, b and idf (document lengths
quantised to a byte, as Lucene does). Each `apply` is one tantivy commit; searches see it once the reader is reloaded
(`publish`: this reader never reloads by itself); `save` writes the generation stamp beside the segments, after them.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import tantivy

from qa.derived import PassageRow
from qa.files import atomic_write_bytes
from qa.lexical import K1, LexicalHits, idf
from qa.lexical.analysis import ANALYSIS_VERSION, PHRASE_WEIGHT, QueryTerms, passage_terms, query_terms
from qa.query import Query

if TYPE_CHECKING:
    from qa.derived import Site
    from qa.schemas import Filters

__all__ = ["TantivyIndex"]

log = logging.getLogger(__name__)

DIRECTORY = "lexical"  # in the index folder
STAMP_FILE = "viqa-stamp.json"
FIELDS = ("syllables", "phrases", "folded")
# Memory for the writer's in-memory segment: one API write is a few articles; a rebuild adds everything in one go and
# flushes a segment whenever this fills (tantivy's minimum is 15 MB a thread).
WRITE_HEAP = 64_000_000
# tantivy allows one writer per index, across processes: a `qa index` beside `qa serve` waits for the other's commit.
WRITER_WAIT_S = 60.0
_EMPTY = LexicalHits(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32), 0.0)


def _schema() -> tantivy.Schema:
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("key", indexed=True, fast=True)
    for name in FIELDS:
        builder.add_text_field(name, tokenizer_name="whitespace", index_option="freq")
    return builder.build()


class TantivyIndex:
    """A tantivy index of passage keys; safe to share between threads (one writer at a time, many readers)."""

    backend = "tantivy"
    shared = False

    def __init__(self, directory: Path, index: tantivy.Index) -> None:
        self.directory = directory
        self._schema = index.schema
        index.config_reader(reload_policy="Manual")  # searches see a commit once it is published
        self._index = index
        self._lock = threading.Lock()  # writers
        self._pinned: tantivy.Searcher | None = None  # a snapshot's searcher (`snapshot`)

    # --- lifecycle ----------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path) -> TantivyIndex:
        directory = Path(directory)
        shutil.rmtree(directory, ignore_errors=True)
        # exist_ok: a reader of the index being replaced (still alive in this process) may recreate tantivy's lock
        # file while rmtree empties the folder, which then stays; a lock file is not an index.
        directory.mkdir(parents=True, exist_ok=True)
        return cls(directory, tantivy.Index(_schema(), path=str(directory), reuse=False))

    @classmethod
    def at(cls, site: Site, *, fresh: bool, size: int) -> TantivyIndex | None:
        directory = site.directory / DIRECTORY
        return cls.create(directory) if fresh else cls.open(directory)

    def fits(self, size: int) -> bool:
        return True  # the stamp decides

    @classmethod
    def open(cls, directory: Path) -> TantivyIndex | None:
        directory = Path(directory)
        stamp = _read_stamp(directory)
        if stamp.get("analysis") != ANALYSIS_VERSION:
            return None
        try:
            index = tantivy.Index.open(str(directory))
            index.searcher().num_docs  # noqa: B018 (reads the segment list: fails on a damaged index)
        except (ValueError, OSError) as exc:
            log.warning("lexical index in %s unreadable (%s)", directory, exc)
            return None
        return cls(directory, index)

    def saved_generation(self) -> int | None:
        generation = _read_stamp(self.directory).get("generation")
        return generation if isinstance(generation, int) else None

    def apply(self, removed: Sequence[int], added: Sequence[PassageRow], *, publish: bool = True) -> None:
        if not len(removed) and not added:
            return
        with self._lock:
            writer = self._writer()
            try:
                if len(removed):
                    keys = [int(k) for k in removed]
                    writer.delete_documents_by_query(tantivy.Query.term_set_query(self._schema, "key", keys))
                for row in added:
                    terms = passage_terms(row.text)
                    doc = tantivy.Document()
                    doc.add_unsigned("key", int(row.key))
                    doc.add_text("syllables", " ".join(terms.syllables))
                    doc.add_text("phrases", " ".join(terms.phrases))
                    doc.add_text("folded", " ".join(terms.folded))
                    writer.add_document(doc)
                writer.commit()
            except BaseException:
                writer.rollback()
                raise
            finally:
                writer.wait_merging_threads()
        if publish:
            self.publish()

    def publish(self) -> None:
        self._index.reload()

    def _writer(self) -> tantivy.IndexWriter:
        deadline = time.monotonic() + WRITER_WAIT_S
        while True:
            try:
                return self._index.writer(heap_size=WRITE_HEAP, num_threads=1)
            except ValueError as exc:  # tantivy's LockBusy: another process is committing
                if "LockBusy" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(0.05)

    def save(self, generation: int) -> None:
        stamp = {
            "generation": generation,
            "analysis": ANALYSIS_VERSION,
            "engine": str(getattr(tantivy, "__version__", "tantivy")),
        }
        atomic_write_bytes(self.directory / STAMP_FILE, json.dumps(stamp).encode())

    def close(self) -> None:
        pass

    # --- reads ----------------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self._searcher().num_docs)

    def snapshot(self) -> TantivyIndex:
        pinned = copy.copy(self)
        pinned._pinned = self._index.searcher()  # the segments of the last reload, kept while it lives
        return pinned

    def _searcher(self) -> tantivy.Searcher:
        return self._pinned if self._pinned is not None else self._index.searcher()

    def search(
        self, query: Query, k: int, allowed: np.ndarray | None = None, *, filters: Filters | None = None
    ) -> LexicalHits:
        terms = query_terms(query)
        searcher = self._searcher()
        matching = self._terms_query(terms)
        if matching is None or k <= 0:
            return _EMPTY
        if allowed is not None:
            if not len(allowed):
                return _EMPTY
            matching = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, self._only(allowed)), (tantivy.Occur.Must, matching)]
            )
        hits = searcher.search(matching, limit=k, count=False).hits
        keys, scores = self._keys_scores(searcher, hits)
        return LexicalHits(keys, scores, self._bound(searcher, terms))

    def scores_for(self, query: Query, keys: Sequence[int]) -> np.ndarray:
        out = np.zeros(len(keys), dtype=np.float32)
        matching = self._terms_query(query_terms(query))
        if matching is None or not len(keys):
            return out
        searcher = self._searcher()
        wanted = np.asarray(keys, dtype=np.int64)
        both = tantivy.Query.boolean_query([(tantivy.Occur.Must, self._only(wanted)), (tantivy.Occur.Must, matching)])
        found, scores = self._keys_scores(searcher, searcher.search(both, limit=len(wanted), count=False).hits)
        position = {int(k): i for i, k in enumerate(wanted.tolist())}
        for key, score in zip(found.tolist(), scores.tolist(), strict=True):
            out[position[key]] = score
        return out

    def doc_freqs(self, field: str, terms: Sequence[str]) -> list[int]:
        searcher = self._searcher()
        return [int(searcher.doc_freq(field, term)) for term in terms]

    # --- helpers ------------------------------------------------------------------------------------------------
    def _terms_query(self, terms: QueryTerms) -> tantivy.Query | None:
        clauses: list[tuple[Any, tantivy.Query]] = []
        for field, values, weight in (
            ("syllables", terms.syllables, 1.0),
            ("phrases", terms.phrases, PHRASE_WEIGHT),
            ("folded", terms.folded, 1.0),
        ):
            for value in values:
                term = tantivy.Query.term_query(self._schema, field, value, index_option="freq")
                boosted = term if weight == 1.0 else tantivy.Query.boost_query(term, weight)
                clauses.append((tantivy.Occur.Should, boosted))
        return tantivy.Query.boolean_query(clauses) if clauses else None

    def _only(self, keys: np.ndarray) -> tantivy.Query:
        keyset = tantivy.Query.term_set_query(self._schema, "key", [int(k) for k in keys.tolist()])
        return tantivy.Query.const_score_query(keyset, 0.0)

    @staticmethod
    def _keys_scores(searcher: tantivy.Searcher, hits: list[tuple[float, Any]]) -> tuple[np.ndarray, np.ndarray]:
        if not hits:
            return _EMPTY.keys, _EMPTY.scores
        keys = searcher.fast_field_values("key", [address for _, address in hits])
        return np.asarray(keys, dtype=np.int64), np.asarray([score for score, _ in hits], dtype=np.float32)

    @staticmethod
    def _bound(searcher: tantivy.Searcher, terms: QueryTerms) -> float:
        n_docs = searcher.num_docs
        bound = 0.0
        for field, values, weight in (
            ("syllables", terms.syllables, 1.0),
            ("phrases", terms.phrases, PHRASE_WEIGHT),
            ("folded", terms.folded, 1.0),
        ):
            for value in values:
                df = searcher.doc_freq(field, value)
                if df > 0:
                    bound += weight * idf(n_docs, df) * (K1 + 1.0)
        return bound


def _read_stamp(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / STAMP_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}
