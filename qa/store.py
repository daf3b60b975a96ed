"""One index: a database of articles and passages (`qa.database`: the SQLite file in the index folder, or a server
such as PostgreSQL), its derived indexes (vectors, lexical) and `manifest.json` in the index folder.

`Store` is a thin facade over the rooms of `qa.storage`, one job each: `meta` (schema, generation, counts, manifest),
`records` (reads and the filter SQL), `writes` (the one write transaction), `indexes` (the derived-index set) and
`terms` (term counts for a lexical engine without its own). The database is the source of truth and the commit point;
readers never wait for a writer. The store knows nothing of parsing, chunking or models.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qa import database as db
from qa.database import DB_FILE
from qa.derived import Scope
from qa.domain import Article, Passage
from qa.lexical import LexicalHits, LexicalIndex
from qa.lexical.tantivy import DIRECTORY as LEXICAL_DIR
from qa.query import Query
from qa.schemas import Filters
from qa.storage.indexes import DerivedIndexes, engines
from qa.storage.meta import (
    ENGINE_PREFIX,
    FORMAT_VERSION,
    MANIFEST_FILE,
    IndexExistsError,
    Manifest,
    Meta,
    NoIndexError,
    StoreError,
    create_schema,
    open_schema,
    unreadable,
)
from qa.storage.records import Records, StoredPassage
from qa.storage.writes import Items, Participant, Sentences, Titles, Writes
from qa.vectors import VectorConfig, VectorIndex
from qa.vectors.faiss import INDEX_FILE as FAISS_FILE

__all__ = [
    "DB_FILE",
    "ENGINE_PREFIX",
    "FAISS_FILE",
    "FORMAT_VERSION",
    "LEXICAL_DIR",
    "MANIFEST_FILE",
    "IndexExistsError",
    "Manifest",
    "NoIndexError",
    "Store",
    "StoreError",
    "StoredPassage",
]


class Store:
    """Articles, passages and their vectors in one directory and one database; safe to share between threads."""

    def __init__(
        self, path: Path, engine: Engine, vectors: VectorConfig, lexical_backend: str = "tantivy", *, new: bool
    ) -> None:
        """The store over an index whose schema exists (`create`, `open`): its derived indexes opened (`new`: made
        empty), rebuilt or filled as they need."""
        self.path = path
        self.engine = engine
        self.vectors = vectors
        self.lexical_backend = lexical_backend
        self._meta = Meta(engine, path)
        self._indexes = DerivedIndexes(engine, path, vectors, lexical_backend, self._meta)
        self._records = Records(engine, self._dim)
        participants: list[Participant] = [self._indexes]
        if self._indexes.term_stats is not None:
            participants.append(self._indexes.term_stats)
        participants.append(self._meta)  # last: the generation moves once the others are in the transaction
        self._writes = Writes(engine, self._dim, participants, self._indexes.replay_pending_deletes)
        self._indexes.open(new=new)

    # --- opening -------------------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: Path,
        *,
        model: str,
        dim: int,
        chunking: dict[str, int],
        vectors: VectorConfig = VectorConfig(),  # noqa: B008 (frozen)
        database_url: str | None = None,
        lexical_backend: str = "tantivy",
    ) -> Store:
        """A new, empty store in `path` (which must not exist or be empty) and in the database at `database_url`
        (which must hold no index; default: the SQLite file in `path`); `vectors` says where its passage vectors
        are searched (FAISS files beside the database unless told otherwise), `lexical_backend` where BM25 runs."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"cannot create an index in {path}: the folder is not empty")
        path.mkdir(parents=True, exist_ok=True)
        engine = db.create_engine(db.database_url(path, database_url))
        try:
            engines(vectors, lexical_backend, path, engine)  # the settings, checked before the database is touched
            create_schema(engine, model=model, dim=dim, chunking=chunking)
            return cls(path, engine, vectors, lexical_backend, new=True)
        except BaseException:
            engine.dispose()
            raise

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        vectors: VectorConfig = VectorConfig(),  # noqa: B008 (frozen)
        database_url: str | None = None,
        lexical_backend: str = "tantivy",
    ) -> Store:
        """Open an existing store (its database at `database_url`, default the SQLite file in `path`); rebuilds a
        local derived index from the database when it is not current (or the vector index is of the wrong kind for
        the corpus size), and fills a shared one (Milvus) when its collection is missing or was left half-built."""
        path = Path(path)
        if database_url is None and not (path / DB_FILE).is_file():
            raise NoIndexError(f"no index at {path} ({DB_FILE} missing): build one with `qa index`")
        engine = db.create_engine(db.database_url(path, database_url))
        where = path if database_url is None else f"{path} (database {engine.url!r})"
        try:
            open_schema(engine, where)
            if database_url is not None:  # the folder holds only what is derived from the database: a new one is fine
                path.mkdir(parents=True, exist_ok=True)
            return cls(path, engine, vectors, lexical_backend, new=False)
        except sa.exc.DBAPIError as exc:  # damage past the header only shows when the pages are read
            engine.dispose()
            raise unreadable(where, exc, engine) from exc
        except BaseException:
            engine.dispose()
            raise

    @property
    def index(self) -> VectorIndex:
        return self._indexes.vector

    @property
    def lexical(self) -> LexicalIndex:
        return self._indexes.lexical

    @functools.cached_property
    def index_id(self) -> str:
        """The index's own id, made when it was created: names its collections in a shared search engine."""
        return str(self.manifest().extra["index_id"])

    @functools.cached_property
    def _dim(self) -> int:
        """The vectors' dimension, fixed when the store was created."""
        return self._meta.manifest().dim

    # --- metadata ------------------------------------------------------------------------------
    def manifest(self) -> Manifest:
        return self._meta.manifest(self._indexes.vector_if_open)

    def set_meta(self, **values: Any) -> None:
        with self._writes.turn():
            self._meta.set(values)
            self._meta.write_manifest(self._indexes.vector_if_open)

    # --- writes (`qa.storage.writes`) ----------------------------------------------------------
    def upsert(
        self,
        items: Items,
        *,
        origin: str,
        sentence_vectors: Sentences | None = None,
        title_vectors: Titles | None = None,
    ) -> None:
        """Insert or replace whole articles with their passages and vectors, in one transaction.

        `sentence_vectors`, when given, holds per item one array per passage: a vector for each of its sentences;
        `title_vectors` one vector per item, its title (`qa.answer` scores both against the question).
        """
        self._writes.upsert(items, origin, sentence_vectors, title_vectors)

    def delete(self, article_ids: Iterable[str]) -> int:
        """Remove articles and their passages; returns how many articles existed."""
        return self._writes.delete(article_ids)

    def add_title_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """Store title vectors of articles already indexed (an article since removed is skipped)."""
        self._writes.add_title_vectors(vectors)

    # --- searches (`qa.storage.indexes`) -------------------------------------------------------
    def scope(self, filters: Filters | None) -> Scope:
        """What a search may return: every passage (None), or those whose article passes `filters`."""
        return Scope(filters, self.keys_matching)

    def search(self, queries: np.ndarray, k: int, *, scope: Scope | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, keys) per query row, within `scope`; missing slots have key -1."""
        return self._indexes.search(queries, k, scope)

    def search_lexical(self, query: Query, k: int, *, scope: Scope | None = None) -> LexicalHits:
        """The top `k` BM25 matches of one question within `scope` (see `LexicalIndex.search`)."""
        return self._indexes.search_lexical(query, k, scope)

    def term_counts(self, *, scope: Scope | None = None) -> LexicalIndex:
        """The lexical index a search within `scope` reads, for its passage counts per term (`qa.restore`)."""
        return self._indexes.term_counts(scope)

    def lexical_scores(self, query: Query, keys: Sequence[int]) -> np.ndarray:
        """BM25 of one question for each of `keys` (0 where it shares no term)."""
        return self._indexes.lexical_scores(query, keys)

    def idf(self, terms: Sequence[str], folded: bool) -> list[float]:
        """BM25 idf of each of `terms` among the passages, as accented syllables or accent-free ones (`folded`)."""
        return self._indexes.idf(terms, folded)

    def dense_scores(self, query: np.ndarray, keys: Sequence[int]) -> np.ndarray:
        """Inner product of one query vector with the stored vectors of `keys` (NaN for a key not stored)."""
        return self._indexes.dense_scores(query, keys, self._records)

    # --- reads (`qa.storage.records`) ----------------------------------------------------------
    def sentence_vectors(
        self, *, keys: Sequence[int] | None = None, passage_ids: Sequence[str] | None = None
    ) -> dict[Any, np.ndarray]:
        """Stored sentence vectors (float32 [sentences, dim]) by passage key, or by passage id when `passage_ids`
        are given; a passage stored without them is absent."""
        return self._records.sentence_vectors(keys=keys, passage_ids=passage_ids)

    def title_vectors(self, article_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored title vectors (float32 [dim]) by article id; an article stored without one is absent."""
        return self._records.title_vectors(article_ids)

    def titles_without_vectors(self) -> list[tuple[str, str]]:
        """(article id, title) of the articles with sentence vectors but no title vector, in id order."""
        return self._records.titles_without_vectors()

    def has_sentence_vectors(self) -> bool:
        """Whether the index holds sentence and title vectors (an index built before titles had them does not)."""
        return self._records.has_sentence_vectors()

    def keys_matching(self, filters: Filters) -> np.ndarray:
        """Passage keys whose article passes every given filter (an article with no date fails a date filter)."""
        return self._records.keys_matching(filters)

    def passages_of(self, article_id: str) -> list[Passage]:
        return self._records.passages_of(article_id)

    def passages_by_key(self, keys: Sequence[int]) -> dict[int, StoredPassage]:
        return self._records.passages_by_key(keys)

    def article(self, article_id: str) -> Article | None:
        return self._records.article(article_id)

    def articles(self, *, offset: int = 0, limit: int | None = None) -> list[Article]:
        return self._records.articles(offset=offset, limit=limit)

    def fingerprints(self, origin: str | None = None, *, ids: Sequence[str] | None = None) -> dict[str, str]:
        """Article id → fingerprint: of every stored article, of one origin ("seed", "api", ...), or of those among
        `ids` that are stored (one batched query: also says which exist)."""
        return self._records.fingerprints(origin, ids=ids)

    def ids_by_origin(self) -> dict[str, list[str]]:
        return self._records.ids_by_origin()

    def passage_counts(self, article_ids: Sequence[str]) -> dict[str, int]:
        """Passages of each of `article_ids` (0 for an article not stored)."""
        return self._records.passage_counts(article_ids)

    def close(self) -> None:
        with self._writes.turn():
            self._indexes.close()
            self.engine.dispose()
