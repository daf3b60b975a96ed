"""The derived-index set of one index: its vector and lexical indexes, each opened from its engine's registry
(`qa.vectors.BACKENDS`, `qa.lexical.BACKENDS`), rebuilt or filled from the database when it is not current, kept in
step by every write (a participant of `qa.storage.writes`), saved, and searched.

Readers never wait for a writer's slow steps: a write commits in the database, applies itself to the local indexes
where searches do not see it yet (tantivy's commit), publishes both indexes' new state together while searches are
held for that brief in-memory step alone (FAISS's adds and removes, tantivy's reload), then saves them (FAISS's file,
the stamps) beside the searches. A search reads one published generation, never a mix of two; the searches of a
question batch share a `Scope`, which pins the generation its first search read (`View`) for the others.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qa import database as db
from qa.derived import DerivedIndex, Scope, Site
from qa.lexical import LexicalHits, LexicalIndex, idf, lexical_engine
from qa.locks import ReadersWriterLock
from qa.milvus import MilvusError
from qa.query import Query
from qa.storage.meta import ENGINE_PREFIX, Manifest, Meta, StoreError
from qa.storage.records import Records, chunks, passage_rows
from qa.storage.terms import TERMS_VERSION, TermStats, term_counts
from qa.vectors import VectorConfig, VectorIndex, vector_engine

if TYPE_CHECKING:
    from qa.storage.writes import Change

log = logging.getLogger(__name__)


class View(NamedTuple):
    """One published state of the local derived indexes, as a question batch reads it throughout."""

    generation: int
    last_key: int  # the largest passage key published (keys only grow: a later write's passages are above it)
    lexical: LexicalIndex | None  # the lexical index as it was then (`LexicalIndex.snapshot`)


def _up_to(last_key: int, scores: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Dense results without the passages published after `last_key` (for a question pinned before them): each
    row's others first, in order; the freed slots empty (key -1, score -inf)."""
    later = keys > last_key
    if not later.any():
        return scores, keys
    out_scores, out_keys = np.full_like(scores, -np.inf), np.full_like(keys, -1)
    for row, keep in enumerate(~later):
        n = int(keep.sum())
        out_scores[row, :n], out_keys[row, :n] = scores[row][keep], keys[row][keep]
    return out_scores, out_keys


def engines(vectors: VectorConfig, lexical_backend: str, path: Path, engine: Engine) -> tuple[Any, Any]:
    """The vector and lexical engine classes the settings name, once checked against the deployment: a shared
    engine living inside this process cannot serve replicas that share a database server."""
    try:
        lexical = lexical_engine(lexical_backend)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    vector = vector_engine(vectors.backend)
    site = Site(path, 0, "", vectors)
    private = [e for e in (vector, lexical) if e.shared and e.in_process(site)]
    if private and engine.dialect.name != "sqlite":
        raise StoreError(
            "with a database server (QA_DATABASE_URL), QA_MILVUS_URI must name a Milvus server that every replica "
            "shares (http://host:19530), not a milvus-lite file of this replica"
        )
    return vector, lexical


class DerivedIndexes:
    """The vector and the lexical index of one store; safe to share between threads."""

    reads_removed_text = False

    def __init__(self, engine: Engine, path: Path, vectors: VectorConfig, lexical_backend: str, meta: Meta) -> None:
        self.engine = engine
        self.path = path
        self.config = vectors
        self.meta = meta
        self._engines = engines(vectors, lexical_backend, path, engine)
        lexical = self._engines[1]
        self.term_stats = TermStats(engine) if getattr(lexical, "term_stats_in_database", False) else None
        self._published = ReadersWriterLock()  # searches share it; a write's publish holds it alone
        self._vector: VectorIndex | None = None
        self._lexical: LexicalIndex | None = None
        self._view = View(0, 0, None)

    @property
    def vector(self) -> VectorIndex:
        assert self._vector is not None, "store is closed"
        return self._vector

    @property
    def lexical(self) -> LexicalIndex:
        assert self._lexical is not None, "store is closed"
        return self._lexical

    @property
    def vector_if_open(self) -> VectorIndex | None:
        return self._vector

    def _all(self) -> tuple[DerivedIndex, ...]:
        return (self.vector, self.lexical)

    # --- opening ----------------------------------------------------------------------------------------------
    def open(self, *, new: bool) -> None:
        """New, empty indexes (`new`: a store just created) saved at generation 0; else the saved ones where current
        (a local index) or complete (a shared one), the others rebuilt or filled from the database."""
        manifest = self.meta.manifest()
        self._site = Site(self.path, manifest.dim, str(manifest.extra["index_id"]), self.config, self.term_stats)
        vector, lexical = self._engines
        self._vector = self._opened("vector", vector, manifest, new=new)
        self._lexical = self._opened("lexical", lexical, manifest, new=new)
        with self.engine.connect() as conn:
            last_key = conn.scalar(sa.select(sa.func.max(db.passages.c.key))) or 0
        self._view = View(manifest.generation, last_key, self.lexical.snapshot())
        if new:
            self.save(0)
        else:
            self.replay_pending_deletes()

    def _opened(self, name: str, engine: Any, manifest: Manifest, *, new: bool) -> Any:
        """One derived index: a shared one attached (`_attached`); a local one new and empty (`new`), else the saved
        one if it is current and fits the corpus, else one rebuilt from the database."""
        size, generation = manifest.passages, manifest.generation
        if engine.shared:
            return self._attached(engine, self._site, vectors=name == "vector")
        if new:
            return engine.at(self._site, fresh=True, size=0)
        index = engine.at(self._site, fresh=False, size=size)
        saved = index.saved_generation() if index is not None else None
        if index is not None and saved == generation:
            return index
        why = "missing or unusable" if index is None else f"saved at generation {saved}"
        if index is not None:
            index.close()
            index = None  # the engine's own threads go with the last reference
        return self._rebuilt(name, why, lambda: engine.at(self._site, fresh=True, size=size), generation)

    def _rebuilt(self, name: str, why: str, create: Any, generation: int) -> Any:
        """A new index (`create`) filled from the database and saved at its `generation`."""
        log.warning(
            "%s index in %s %s, the database at %d: rebuilding it from the database", name, self.path, why, generation
        )
        vectors = name == "vector"
        started = time.perf_counter()
        index = create()
        total = 0
        with self.engine.connect() as conn:
            for rows in passage_rows(conn, text=not vectors, vector=vectors):
                index.apply([], rows)
                total += len(rows)
        index.save(generation)
        log.info("%s index rebuilt: %d passages in %.1f s", name, total, time.perf_counter() - started)
        return index

    def _attached(self, engine: Any, site: Site, *, vectors: bool) -> Any:
        """A shared index (`DerivedIndex.shared`): as it is when the database records its collection complete, else
        (new, a fill that stopped half-way, or a collection the engine lost) recreated and filled from the database.
        One replica fills it while the others wait on the database's lock, then find it complete."""
        collection = engine.collection_at(site)
        marker = ENGINE_PREFIX + collection
        if not vectors and self.term_stats is not None:
            marker += f"@terms{TERMS_VERSION}"  # a collection filled when fewer terms were counted is filled again
        with self.engine.begin() as conn:
            db.lock_name(conn, marker)
            if conn.scalar(sa.select(db.meta.c.value).where(db.meta.c.key == marker)) is not None:
                index = engine.at(site, fresh=False, size=0)
                if not getattr(index, "created", False):
                    return index
                index.close()
                log.warning("%s is gone from the search engine", collection)
            log.warning("filling %s from the database", collection)
            started = time.perf_counter()
            index = engine.at(site, fresh=True, size=0)
            counts = self.term_stats if not vectors else None
            try:
                total, terms = 0, Counter[tuple[str, str]]()
                for rows in passage_rows(conn, text=not vectors, vector=vectors):
                    index.apply([], rows)
                    total += len(rows)
                    if counts is not None:
                        terms.update(term_counts(row.text for row in rows))
                index.save(0)
                if counts is not None:
                    counts.replace(conn, terms, total)
                db.insert_or_replace(conn, db.meta, [{"key": marker, "value": json.dumps(total)}])
            except BaseException:
                index.close()
                raise
            log.info("%s filled: %d passages in %.1f s", collection, total, time.perf_counter() - started)
        return index

    # --- a participant of every write (`qa.storage.writes`) ------------------------------------------------------
    def before_commit(self, conn: sa.Connection, change: Change) -> None:
        """A write's passages go into the shared indexes (a failure there rolls the write back), and the keys it
        removes are recorded for them (`pending_deletes`)."""
        shared = [index for index in self._all() if index.shared]
        for index in shared:
            index.apply([], change.added)
        if change.removed and shared:
            conn.execute(sa.insert(db.pending_deletes), [{"key": key} for key in change.removed])

    def after_commit(self, change: Change) -> None:
        """A committed write, applied to the local indexes and published to searches (both together), its removals
        to the shared ones; then every local index is saved with the database's new generation."""
        local = [index for index in self._all() if not index.shared]
        for index in local:
            index.apply(change.removed, change.added, publish=False)  # tantivy commits: searches see the old state
        manifest = self.meta.manifest()
        last_key = max([self._view.last_key, *(row.key for row in change.added)])
        with self._published.writing():
            for index in local:
                index.publish()
            self._view = View(manifest.generation, last_key, self.lexical.snapshot())
        if len(local) < len(self._all()):
            try:
                self.replay_pending_deletes()
            except MilvusError as exc:  # committed all the same: the next write or open deletes them
                log.warning("old passages stay in the search engine for now (%s)", exc)
        self._refit(manifest.passages, manifest.generation)
        self.save(manifest.generation)

    def _refit(self, size: int, generation: int) -> None:
        """A local vector index whose kind no longer suits the corpus size (flat → HNSW → IVF as it grows) is
        rebuilt from the database now, while searches go on in the old one, then swapped in: the next start has
        nothing to rebuild."""
        old = self.vector
        if old.shared or old.fits(size):
            return
        engine, site = self._engines[0], self._site
        why = f"is a {old.kind} index of {size} vectors"
        new = self._rebuilt("vector", why, lambda: engine.at(site, fresh=True, size=size), generation)
        with self._published.writing():
            self._vector = new
        old.close()

    def replay_pending_deletes(self, batch: int = 10_000) -> None:
        """Remove from the shared indexes the passages the database no longer holds (`pending_deletes`), then
        forget them. Idempotent: two replicas replaying the same keys do no harm."""
        shared = [index for index in self._all() if index.shared]
        if not shared:
            return
        table = db.pending_deletes.c
        while True:
            with self.engine.connect() as conn:
                keys = list(conn.scalars(sa.select(table.key).order_by(table.key).limit(batch)))
            if not keys:
                return
            for index in shared:
                index.apply(keys, [])
            with self.engine.begin() as conn:
                for part in chunks(keys):
                    conn.execute(sa.delete(db.pending_deletes).where(table.key.in_(part)))

    def save(self, generation: int) -> None:
        """Each local index stamped with `generation`, then the manifest (for people: the stamps decide). Only reads
        the indexes: searches go on."""
        for index in self._all():
            if not index.shared and index.saved_generation() != generation:
                index.save(generation)
        self.meta.write_manifest(self.vector)

    def close(self) -> None:
        with self._published.writing():
            for index in (self._lexical, self._vector):
                if index is not None:
                    index.close()
            self._vector = self._lexical = None

    # --- searches -----------------------------------------------------------------------------------------------
    def _pinned(self, scope: Scope | None) -> View:
        """The published state a search reads: its scope's, else (its first search) the current one, pinned there."""
        if scope is None:
            return self._view
        if scope.view is None:
            scope.view = self._view
        return scope.view  # type: ignore[no-any-return]

    def search(self, queries: np.ndarray, k: int, scope: Scope | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, keys) per query row, within `scope`; missing slots have key -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = queries.shape[0]
        none = np.zeros((n, 0), dtype=np.float32), np.full((n, 0), -1, dtype=np.int64)
        if k <= 0:
            return none
        if self.vector.shared:  # the engine filters by itself, and counts no rows first
            return tuple(self.vector.search(queries, k, filters=scope.filters if scope else None))  # type: ignore[return-value]
        allowed = scope.keys() if scope else None
        with self._published.reading():
            view = self._pinned(scope)
            index = self.vector
            size = len(index)
            pool = size if allowed is None else min(len(allowed), size)
            if pool == 0:
                return none
            scores, keys = index.search(queries, min(k, pool), allowed)
            if view is not self._view:  # the question started before the last write was published
                scores, keys = _up_to(view.last_key, scores, keys)
        return scores, keys

    def search_lexical(self, query: Query, k: int, scope: Scope | None) -> LexicalHits:
        """The top `k` BM25 matches of one question within `scope` (see `LexicalIndex.search`)."""
        if self.lexical.shared:
            return self.lexical.search(query, k, filters=scope.filters if scope else None)
        allowed = scope.keys() if scope else None
        with self._published.reading():
            return (self._pinned(scope).lexical or self.lexical).search(query, k, allowed)

    def term_counts(self, scope: Scope | None) -> LexicalIndex:
        """The lexical index as a search within `scope` reads it, for its passage counts per term (`qa.restore`)."""
        if self.lexical.shared:
            return self.lexical
        with self._published.reading():
            return self._pinned(scope).lexical or self.lexical

    def lexical_scores(self, query: Query, keys: Sequence[int]) -> np.ndarray:
        """BM25 of one question for each of `keys` (0 where it shares no term)."""
        with self._published.reading():
            return self.lexical.scores_for(query, keys)

    def idf(self, terms: Sequence[str], folded: bool) -> list[float]:
        """BM25 idf of each of `terms` among the passages, as accented syllables or accent-free ones (`folded`)."""
        field = "folded" if folded else "syllables"
        with self._published.reading():
            n_docs = len(self.lexical)
            freqs = self.lexical.doc_freqs(field, terms)
        return [idf(n_docs, df) for df in freqs]

    def dense_scores(self, query: np.ndarray, keys: Sequence[int], records: Records) -> np.ndarray:
        """Inner product of one query vector with the stored vectors of `keys` (NaN for a key not stored).

        From the vector index's own copy where the backend keeps one (FAISS: in memory, the fast path), else from
        the database, the source of truth (slower, and much slower when its pages are not in the cache).
        """
        out = np.full(len(keys), np.nan, dtype=np.float32)
        if not keys:
            return out
        wanted = np.asarray(keys, dtype=np.int64)
        with self._published.reading():
            lookup = getattr(self.vector, "lookup", None)
            if lookup is not None:
                present, vectors = lookup(wanted)
                out[present] = vectors @ query
                wanted = wanted[~present]  # not in the index: ask the database (normally none)
        if not len(wanted):
            return out
        stored = records.vectors(wanted.tolist())
        for i, key in enumerate(keys):
            vector = stored.get(int(key))
            if vector is not None:
                out[i] = float(vector @ query)
        return out
