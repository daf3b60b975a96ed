"""One index: a database of articles and passages (`qa.database`: the SQLite file in the index folder, or a
server such as PostgreSQL), a vector index (`qa.vectors`), `manifest.json` in the index folder.

The database is the source of truth and the commit point: every write is one transaction that also stores the
passage vectors and bumps a generation counter. The vector index (FAISS files, or a Milvus collection) is a
derived cache saved after the commit (write aside, fsync, rename); if a crash leaves it behind the database,
or its kind does not suit the corpus size, `Store.open` rebuilds it from the stored vectors. The lexical
index (`qa.lexical`, tantivy segments in `lexical/`) is derived the same way (`qa.derived`): applied and stamped after
every commit, rebuilt from the stored passages at open when its stamp is not the database's generation. The store
knows nothing of parsing, chunking or models.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from qa import database as db
from qa.database import DB_FILE
from qa.dates import VIETNAM_TZ
from qa.derived import DerivedIndex, PassageRow, Scope
from qa.domain import Article, Passage, encoder_input
from qa.files import atomic_write_bytes
from qa.lexical import LexicalHits, LexicalIndex, create_lexical_index, idf, open_lexical_index
from qa.lexical.analysis import passage_terms
from qa.milvus import BM25_SUFFIX, MilvusError, collection_name, resolve_uri
from qa.milvus import is_local as milvus_is_local
from qa.query import Query
from qa.reading import Reading, passage_readings
from qa.reading import dumps as dumps_readings
from qa.reading import loads as loads_readings
from qa.schemas import Filters
from qa.vectors import VectorConfig, VectorIndex, VectorIndexError, load_vector_index, make_vector_index
from qa.vectors.faiss import INDEX_FILE, choose_kind

log = logging.getLogger(__name__)

D = TypeVar("D", bound=DerivedIndex)

FORMAT_VERSION = 1
FAISS_FILE = INDEX_FILE
MANIFEST_FILE = "manifest.json"
LEXICAL_DIR = "lexical"
LEXICAL_BACKENDS = ("tantivy", "milvus")
# Meta keys of the search engines' collections that were filled completely (a build that crashed half-way is redone).
ENGINE_PREFIX = "engine:"
# The `term_stats` row that counts the passages (BM25's N).
ALL_PASSAGES = ("", "")


class StoreError(RuntimeError):
    """The index directory is missing, corrupt, or of another format; the message says how to rebuild."""


class IndexExistsError(StoreError):
    """The database already holds an index (another replica created it first)."""


class NoIndexError(StoreError):
    """Where an index was looked for there is none (yet): no database file, or a database without its tables."""


@dataclass(frozen=True, slots=True)
class Manifest:
    format_version: int
    model: str
    dim: int
    articles: int
    passages: int
    generation: int
    index_kind: str
    chunking: dict[str, int]
    seeds_fingerprint: str
    created_at: str
    updated_at: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredPassage:
    key: int
    passage: Passage
    article: Article
    readings: str | None = None  # what answer selection reads of it (`qa.reading.dumps`); None: stored before them
    title_vector: np.ndarray | None = None  # its article's title vector (float32), when the index stores them

    def decoded_readings(self) -> list[Reading] | None:
        return None if self.readings is None else loads_readings(self.readings)


def _article_row(article: Article, origin: str) -> dict[str, Any]:
    return {
        "id": article.id,
        "title": article.title,
        "body": article.body,
        "published_at": article.published_at.isoformat() if article.published_at else None,
        "source": article.source,
        "author": article.author,
        "url": article.url,
        "fingerprint": article.fingerprint,
        "origin": origin,
        "updated_at": time.time(),
    }


def _article_from_row(row: RowMapping) -> Article:
    published = datetime.fromisoformat(row["published_at"]) if row["published_at"] else None
    return Article(
        id=row["id"],
        title=row["title"],
        body=row["body"],
        published_at=published,
        source=row["source"],
        author=row["author"],
        url=row["url"],
        fingerprint=row["fingerprint"],
    )


def _local_time(value: datetime) -> datetime:
    """The store's clock: naive Vietnam local time (an aware bound is converted to it)."""
    return value.astimezone(VIETNAM_TZ).replace(tzinfo=None) if value.tzinfo else value


_PASSAGE = db.passages.c
_ARTICLE = db.articles.c
# A passage as `_passage_from_row` reads it, its id under another name so that it can stand beside its article's.
_PASSAGE_COLUMNS = (
    _PASSAGE.id.label("passage_id"),
    _PASSAGE.article_id,
    _PASSAGE.ordinal,
    _PASSAGE.start,
    _PASSAGE.end,
    _PASSAGE.text,
    _PASSAGE.sentences,
)
# Bound parameters per statement when looking rows up by a list of values: far below SQLite's limit (32,766)
# and PostgreSQL's (65,535).
_IN_CHUNK = 500


def _passage_from_row(row: RowMapping) -> Passage:
    return Passage(
        id=row["passage_id"],
        article_id=row["article_id"],
        ordinal=row["ordinal"],
        text=row["text"],
        start=row["start"],
        end=row["end"],
        sentences=tuple((int(a), int(b)) for a, b in json.loads(row["sentences"])),
    )


def _unreadable(where: object, exc: BaseException, engine: Engine) -> StoreError:
    """The error for an index that cannot be read, in one line: the database's own words (SQLAlchemy's message adds
    the statement and a link). A database server that does not answer is not a corrupt index."""
    reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).strip().replace("\n", " ")
    if isinstance(exc, sa.exc.OperationalError) and engine.dialect.name != "sqlite":
        return StoreError(f"index at {where}: cannot reach its database ({reason})")
    return StoreError(f"index at {where} is corrupt ({reason}): rebuild it with `qa index --rebuild`")


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def _published(article: Article) -> str | None:
    return article.published_at.isoformat() if article.published_at else None


def _term_counts(texts: Iterable[str]) -> Counter[tuple[str, str]]:
    """(field, term) → passages holding it, over `texts` (as the lexical index reads passages; unigrams only)."""
    counts: Counter[tuple[str, str]] = Counter()
    for text in texts:
        terms = passage_terms(text)
        counts.update(("syllables", term) for term in set(terms.syllables))
        counts.update(("folded", term) for term in set(terms.folded) if "_" not in term)
    return counts


def _add_term_counts(conn: sa.Connection, counts: Counter[tuple[str, str]]) -> None:
    rows = [{"field": f, "term": t, "docs": n} for (f, t), n in sorted(counts.items()) if n]
    db.add_counts(conn, db.term_stats, rows, "docs")


class Store:
    """Articles, passages and their vectors in one directory and one database; safe to share between threads."""

    def __init__(self, path: Path, engine: Engine, vectors: VectorConfig, lexical_backend: str = "tantivy") -> None:
        if lexical_backend not in LEXICAL_BACKENDS:
            raise StoreError(f"unknown lexical backend {lexical_backend!r}; known: {', '.join(LEXICAL_BACKENDS)}")
        uses_milvus = vectors.backend == "milvus" or lexical_backend == "milvus"
        if uses_milvus and engine.dialect.name != "sqlite" and milvus_is_local(resolve_uri(vectors.milvus_uri, path)):
            raise StoreError(
                "with a database server (QA_DATABASE_URL), QA_MILVUS_URI must name a Milvus server that every replica "
                "shares (http://host:19530), not a milvus-lite file of this replica"
            )
        self.path = path
        self.engine = engine
        self.vectors = vectors
        self.lexical_backend = lexical_backend
        # A lexical engine without per-term counts a client can read: the database keeps them (`term_stats`).
        self.counts_terms = lexical_backend == "milvus"
        self._index: VectorIndex | None = None
        self._lock = threading.RLock()
        self._lexical: LexicalIndex | None = None

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
        now = datetime.now().isoformat(timespec="seconds")
        meta = {
            "format_version": FORMAT_VERSION,
            "model": model,
            "dim": dim,
            "generation": 0,
            "index_kind": "flat",
            "chunking": chunking,
            "seeds_fingerprint": "",
            "created_at": now,
            "updated_at": now,
            "index_id": uuid.uuid4().hex,
        }
        try:
            store = cls(path, engine, vectors, lexical_backend)  # checks the settings before the database is touched
            with engine.begin() as conn:
                db.lock_name(conn, "create index")  # two replicas starting on an empty database: one creates it
                if sa.inspect(conn).has_table(db.meta.name):
                    raise IndexExistsError(f"cannot create an index in {engine.url!r}: the database already holds one")
                db.metadata.create_all(conn)
                conn.execute(sa.insert(db.meta), [{"key": k, "value": json.dumps(v)} for k, v in meta.items()])
        except BaseException:
            engine.dispose()
            raise
        try:
            store._index = store._load_vectors(new=True)
            store._lexical = store._load_lexical(new=True)
        except BaseException:
            engine.dispose()
            raise
        store._save_derived(0)
        return store

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
            with engine.begin() as conn:
                if not sa.inspect(conn).has_table(db.meta.name):
                    raise NoIndexError(f"no index at {where} (its database holds none): build one with `qa index`")
                value: Any = conn.scalar(sa.select(db.meta.c.value).where(db.meta.c.key == "format_version"))
                version = int(json.loads(value))
                if version == FORMAT_VERSION:  # the tables and meta a later version of this format added
                    db.metadata.create_all(conn)
                    db.insert_if_absent(conn, db.meta, [{"key": "index_id", "value": json.dumps(uuid.uuid4().hex)}])
        except (sa.exc.DBAPIError, TypeError, ValueError) as exc:
            engine.dispose()
            raise _unreadable(where, exc, engine) from exc
        except BaseException:
            engine.dispose()
            raise
        if version != FORMAT_VERSION:
            engine.dispose()
            raise StoreError(
                f"index at {where} has format {version}, this version reads {FORMAT_VERSION}: "
                "rebuild it with `qa index --rebuild`"
            )
        if database_url is not None:  # the folder holds only what is derived from the database: a new one is fine
            path.mkdir(parents=True, exist_ok=True)
        try:
            store = cls(path, engine, vectors, lexical_backend)
            store._index = store._load_vectors()
            store._lexical = store._load_lexical()
            store._replay_pending_deletes()
        except sa.exc.DBAPIError as exc:  # damage past the header only shows when the pages are read
            engine.dispose()
            raise _unreadable(where, exc, engine) from exc
        except BaseException:
            engine.dispose()
            raise
        return store

    @property
    def lexical(self) -> LexicalIndex:
        assert self._lexical is not None, "store is closed"
        return self._lexical

    @property
    def index(self) -> VectorIndex:
        assert self._index is not None, "store is closed"
        return self._index

    def _new_vector_index(self, dim: int, size: int) -> VectorIndex:
        return make_vector_index(self.vectors, dim, size, directory=self.path)

    def _wanted_kind(self, size: int) -> str | None:
        """The FAISS kind this corpus size calls for (None: any, e.g. another backend or a fixed kind)."""
        if self.vectors.backend != "faiss":
            return None
        return choose_kind(size) if self.vectors.faiss_index == "auto" else self.vectors.faiss_index

    def _load_vectors(self, *, new: bool = False) -> VectorIndex:
        """The vector index: a shared one attached (`_attached`); a local one new (`new`), or the saved one if it is
        current and of the kind the corpus size calls for, else one rebuilt from the database."""
        if self.vectors.backend == "milvus":
            from qa.vectors.milvus import MilvusIndex

            return self._attached(
                collection_name(self.vectors.milvus_collection, self.index_id),
                lambda fresh: MilvusIndex.attach(self.vectors, self._dim, self.index_id, directory=self.path,
                                                 fresh=fresh),
                vectors=True,
            )  # fmt: skip
        if new:
            return self._new_vector_index(self._dim, 0)
        manifest = self.manifest()
        index: VectorIndex | None = None
        try:
            index = load_vector_index(self.vectors, self.path)
        except VectorIndexError as exc:
            log.warning("vector index in %s unreadable (%s)", self.path, exc)
        wanted = self._wanted_kind(manifest.passages)
        fits = index is not None and len(index) == manifest.passages and index.dim == manifest.dim
        if index is not None and not (fits and wanted in (None, index.kind)):
            log.warning("vector index in %s is a %s index of %d vectors", self.path, index.kind, len(index))
            index.close()
            index = None
        return self._current_or_rebuilt(
            "vector", index, lambda: self._new_vector_index(manifest.dim, manifest.passages), vectors=True
        )

    def _load_lexical(self, *, new: bool = False) -> LexicalIndex:
        """The lexical index: a shared one attached (`_attached`); a local one new (`new`), or the saved one if it
        is current, else one rebuilt from the stored passages (the analysis is Python: most of a rebuild's time)."""
        if self.lexical_backend == "milvus":
            from qa.lexical.milvus import MilvusLexicalIndex

            uri, prefix = self.vectors.milvus_uri, self.vectors.milvus_collection
            return self._attached(
                collection_name(prefix, self.index_id, BM25_SUFFIX),
                lambda fresh: MilvusLexicalIndex.attach(uri, prefix, self.index_id, self, directory=self.path,
                                                        fresh=fresh),
            )  # fmt: skip
        if new:
            return create_lexical_index(self.path / LEXICAL_DIR)
        return self._current_or_rebuilt(
            "lexical",
            open_lexical_index(self.path / LEXICAL_DIR),
            lambda: create_lexical_index(self.path / LEXICAL_DIR),
        )

    def _attached(self, collection: str, attach: Callable[[bool], D], *, vectors: bool = False) -> D:
        """A shared index (`DerivedIndex.shared`) kept in `collection`: as it is when the database records it
        complete, else (new, a fill that stopped half-way, or a collection the engine lost) recreated and filled
        from the database. One replica fills it while the others wait on the database's lock, then find it
        complete."""
        marker = ENGINE_PREFIX + collection
        with self.engine.begin() as conn:
            db.lock_name(conn, marker)
            if conn.scalar(sa.select(db.meta.c.value).where(db.meta.c.key == marker)) is not None:
                index = attach(False)
                if not getattr(index, "created", False):
                    return index
                index.close()
                log.warning("%s is gone from the search engine", collection)
            log.warning("filling %s from the database", collection)
            started = time.perf_counter()
            index = attach(True)
            try:
                total, counts = 0, Counter[tuple[str, str]]()
                for rows in self._passage_rows(vectors=vectors):
                    index.apply([], rows)
                    total += len(rows)
                    if not vectors and self.counts_terms:
                        counts.update(_term_counts(row.text for row in rows))
                index.save(0)
                if not vectors and self.counts_terms:
                    conn.execute(sa.delete(db.term_stats))
                    counts[ALL_PASSAGES] = total
                    _add_term_counts(conn, counts)
                db.insert_or_replace(conn, db.meta, [{"key": marker, "value": json.dumps(total)}])
            except BaseException:
                index.close()
                raise
            log.info("%s filled: %d passages in %.1f s", collection, total, time.perf_counter() - started)
        return index

    def _current_or_rebuilt(self, name: str, index: D | None, create: Callable[[], D], *, vectors: bool = False) -> D:
        """`index` if it was saved at the database's generation, else a new one (`create`) filled from the database
        and saved at that generation."""
        generation = self.manifest().generation
        saved = index.saved_generation() if index is not None else None
        if index is not None and saved == generation:
            return index
        log.warning(
            "%s index in %s %s, the database at %d: rebuilding it from the database", name, self.path,
            "missing or unusable" if index is None else f"saved at generation {saved}", generation,
        )  # fmt: skip
        if index is not None:
            index.close()
            index = None  # the engine's own threads go with the last reference
        started = time.perf_counter()
        index = create()
        total = 0
        for rows in self._passage_rows(vectors=vectors):
            index.apply([], rows)
            total += len(rows)
        index.save(generation)
        log.info("%s index rebuilt: %d passages in %.1f s", name, total, time.perf_counter() - started)
        return index

    def _passage_rows(self, *, vectors: bool, batch: int = 10_000) -> Iterable[list[PassageRow]]:
        """Every stored passage, in key order, as the derived indexes read it: the vector, or the text."""
        a = _ARTICLE
        content = _PASSAGE.vector if vectors else _PASSAGE.text
        query = (
            sa.select(_PASSAGE.key, content, a.title, a.id, a.source, a.published_at)
            .join_from(db.passages, db.articles)
            .order_by(_PASSAGE.key)
        )
        none = np.empty(0, dtype=np.float32)
        with self.engine.connect() as conn:
            for rows in conn.execution_options(yield_per=batch).execute(query).partitions():
                if vectors:
                    yield [PassageRow(r[0], "", np.frombuffer(r[1], dtype=np.float32), r[3], r[4], r[5]) for r in rows]
                else:
                    yield [PassageRow(r[0], encoder_input(r[2], r[1]), none, r[3], r[4], r[5]) for r in rows]

    # --- what the shared lexical index reads of the database (`qa.lexical.milvus.TermStats`) -------------------
    def n_docs(self) -> int:
        """How many passages the index holds."""
        return self.doc_freqs(ALL_PASSAGES[0], [ALL_PASSAGES[1]])[0]

    def doc_freqs(self, field: str, terms: Sequence[str]) -> list[int]:
        """How many passages hold each of `terms` in `field` (`term_stats`: "syllables" or "folded" unigrams)."""
        if not terms:
            return []
        table = db.term_stats.c
        query = sa.select(table.term, table.docs).where(table.field == field)
        with self._lock:
            found = dict(self._rows_in(query, table.term, list(dict.fromkeys(terms))))
        return [int(found.get(term, 0)) for term in terms]

    @functools.cached_property
    def index_id(self) -> str:
        """The index's own id, made when it was created: names its collections in a shared search engine."""
        return str(self.manifest().extra["index_id"])

    # --- metadata ------------------------------------------------------------------------------
    @functools.cached_property
    def _dim(self) -> int:
        """The vectors' dimension, fixed when the store was created."""
        return self.manifest().dim

    def _meta(self, conn: sa.Connection) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in conn.execute(sa.select(db.meta.c.key, db.meta.c.value))}

    def manifest(self) -> Manifest:
        count = sa.func.count()
        with self._lock, self.engine.connect() as conn:
            meta = self._meta(conn)
            articles = conn.scalar(sa.select(count).select_from(db.articles))
            passages = conn.scalar(sa.select(count).select_from(db.passages))
            index = self._index
        if index is not None:  # the derived index, as it is now (the stored value is only the kind at creation)
            meta["index_kind"] = index.kind
            meta["vector_index"] = index.describe()
        meta = {k: v for k, v in meta.items() if not k.startswith(ENGINE_PREFIX)}
        known = set(Manifest.__dataclass_fields__) - {"articles", "passages", "extra"}
        return Manifest(
            **{k: meta[k] for k in known},
            articles=articles or 0,
            passages=passages or 0,
            extra={k: v for k, v in meta.items() if k not in known},
        )

    def set_meta(self, **values: Any) -> None:
        with self._lock, self.engine.begin() as conn:
            db.insert_or_replace(conn, db.meta, [{"key": k, "value": json.dumps(v)} for k, v in values.items()])
        self._write_manifest()

    def _write_manifest(self) -> None:
        data = asdict(self.manifest())
        atomic_write_bytes(self.path / MANIFEST_FILE, json.dumps(data, ensure_ascii=False, indent=2).encode())

    def _save_derived(self, generation: int) -> None:
        """Each local derived index stamped with `generation`, then the manifest (for people: the stamps decide)."""
        for index in self._derived():
            if not index.shared:
                index.save(generation)
        self._write_manifest()

    # --- writes --------------------------------------------------------------------------------
    def upsert(
        self,
        items: Sequence[tuple[Article, Sequence[Passage], np.ndarray]],
        *,
        origin: str,
        sentence_vectors: Sequence[Sequence[np.ndarray]] | None = None,
        title_vectors: Sequence[np.ndarray] | None = None,
    ) -> None:
        """Insert or replace whole articles with their passages and vectors, in one transaction.

        `sentence_vectors`, when given, holds per item one array per passage: a vector for each of its sentences;
        `title_vectors` one vector per item, its title (`qa.answer` scores both against the question).
        """
        if not items:
            return
        dim = self.manifest().dim
        for article, passages, vectors in items:
            if vectors.shape != (len(passages), dim):
                raise ValueError(
                    f"article {article.id!r}: {len(passages)} passages but vectors of shape {vectors.shape}"
                )
        if sentence_vectors is not None:
            if len(sentence_vectors) != len(items):
                raise ValueError(f"{len(items)} articles but sentence vectors for {len(sentence_vectors)}")
            for (article, passages, _), per_passage in zip(items, sentence_vectors, strict=True):
                shapes = [np.shape(v) for v in per_passage]
                if shapes != [(len(p.sentences), dim) for p in passages]:
                    raise ValueError(f"article {article.id!r}: sentence vectors of shapes {shapes} do not match")
        if title_vectors is not None and [np.shape(v) for v in title_vectors] != [(dim,)] * len(items):
            raise ValueError(f"one title vector of {dim} dimensions per article expected")
        # Read before the transaction: it is pure CPU, and questions need not wait for it.
        readings = [[dumps_readings(passage_readings(a.title, p)) for p in passages] for a, passages, _ in items]
        with self._lock:
            self._replay_pending_deletes()
            ids = [a.id for a, _, _ in items]
            new_keys: list[int] = []
            new_texts: list[str] = []
            new_vectors: list[np.ndarray] = []
            new_articles: list[Article] = []
            with self.engine.begin() as conn:
                db.lock_articles(conn, ids)
                old_keys = self._keys_of(conn, ids)
                old_texts = self._texts_of(conn, old_keys) if self.counts_terms else []
                conn.execute(sa.delete(db.articles).where(_ARTICLE.id.in_(ids)))
                conn.execute(sa.insert(db.articles), [_article_row(a, origin) for a, _, _ in items])
                for n, (article, passages, vectors) in enumerate(items):
                    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                    new_vectors.append(vectors)
                    if not passages:
                        continue
                    new_texts.extend(encoder_input(article.title, p.text) for p in passages)
                    new_articles.extend(article for _ in passages)
                    passage_rows = [
                        {
                            "id": passage.id,
                            "article_id": passage.article_id,
                            "ordinal": passage.ordinal,
                            "start": passage.start,
                            "end": passage.end,
                            "text": passage.text,
                            "sentences": json.dumps(passage.sentences),
                            "vector": vector.tobytes(),
                        }
                        for passage, vector in zip(passages, vectors, strict=True)
                    ]
                    inserted = sa.insert(db.passages).returning(_PASSAGE.key, sort_by_parameter_order=True)
                    keys = [int(key) for key in conn.scalars(inserted, passage_rows)]
                    new_keys.extend(keys)
                    conn.execute(
                        sa.insert(db.passage_readings),
                        [{"key": key, "readings": r} for key, r in zip(keys, readings[n], strict=True)],
                    )
                    if sentence_vectors is not None:
                        conn.execute(
                            sa.insert(db.sentence_vectors),
                            [
                                {"key": key, "vectors": np.ascontiguousarray(v, dtype=np.float16).tobytes()}
                                for key, v in zip(keys, sentence_vectors[n], strict=True)
                            ],
                        )
                if title_vectors is not None:
                    conn.execute(
                        sa.insert(db.title_vectors),
                        [
                            {"article_id": a.id, "vector": np.ascontiguousarray(v, dtype=np.float16).tobytes()}
                            for (a, _, _), v in zip(items, title_vectors, strict=True)
                        ],
                    )
                vectors_added = np.vstack(new_vectors)
                rows = [
                    PassageRow(k, t, v, a.id, a.source, _published(a))
                    for k, t, v, a in zip(new_keys, new_texts, vectors_added, new_articles, strict=True)
                ]
                self._before_commit(conn, old_keys, old_texts, rows)
            self._after_commit(old_keys, rows)

    def delete(self, article_ids: Iterable[str]) -> int:
        """Remove articles and their passages; returns how many articles existed."""
        ids = list(dict.fromkeys(article_ids))
        with self._lock:
            self._replay_pending_deletes()
            with self.engine.begin() as conn:
                db.lock_articles(conn, ids)
                old_keys = self._keys_of(conn, ids)
                old_texts = self._texts_of(conn, old_keys) if self.counts_terms else []
                removed = sum(
                    conn.execute(sa.delete(db.articles).where(_ARTICLE.id.in_(part))).rowcount for part in _chunks(ids)
                )
                if removed:
                    self._before_commit(conn, old_keys, old_texts, [])
            if removed:
                self._after_commit(old_keys, [])
        return removed

    @staticmethod
    def _texts_of(conn: sa.Connection, keys: Sequence[int]) -> list[str]:
        """What the lexical index read of the passages `keys` (before they are deleted)."""
        query = sa.select(_ARTICLE.title, _PASSAGE.text).join_from(db.passages, db.articles)
        texts: list[str] = []
        for part in _chunks(keys):
            rows = conn.execute(query.where(_PASSAGE.key.in_(part)))
            texts.extend(encoder_input(title, text) for title, text in rows)
        return texts

    @staticmethod
    def _keys_of(conn: sa.Connection, article_ids: Sequence[str]) -> list[int]:
        keys: list[int] = []
        for part in _chunks(article_ids):
            keys.extend(conn.scalars(sa.select(_PASSAGE.key).where(_PASSAGE.article_id.in_(part))))
        return keys

    @staticmethod
    def _bump_generation(conn: sa.Connection) -> None:
        """The next generation, in the write's own transaction."""
        value = db.meta.c.value
        conn.execute(
            sa.update(db.meta)
            .where(db.meta.c.key == "generation")
            .values(value=sa.cast(sa.cast(value, sa.BigInteger) + 1, sa.Text))
        )
        now = datetime.now().isoformat(timespec="seconds")
        db.insert_or_replace(conn, db.meta, [{"key": "updated_at", "value": json.dumps(now)}])

    def _derived(self) -> tuple[DerivedIndex, ...]:
        return (self.index, self.lexical)

    def _before_commit(
        self, conn: sa.Connection, removed: list[int], removed_texts: list[str], added: list[PassageRow]
    ) -> None:
        """The last steps of a write's transaction: its passages go into the shared indexes (a failure there rolls
        the write back), the keys it removes are recorded for them, the term counts move, the generation too."""
        for index in self._derived():
            if index.shared:
                index.apply([], added)
        if removed and any(index.shared for index in self._derived()):
            conn.execute(sa.insert(db.pending_deletes), [{"key": key} for key in removed])
        if self.counts_terms:
            counts = _term_counts(row.text for row in added)
            counts.subtract(_term_counts(removed_texts))
            counts[ALL_PASSAGES] += len(added) - len(removed)
            _add_term_counts(conn, counts)
        self._bump_generation(conn)

    def _after_commit(self, removed: list[int], added: list[PassageRow]) -> None:
        """A committed write, applied to the local derived indexes (then saved with the database's new generation),
        and its removals to the shared ones."""
        local = [index for index in self._derived() if not index.shared]
        for index in local:
            index.apply(removed, added)
        if len(local) < len(self._derived()):
            try:
                self._replay_pending_deletes()
            except MilvusError as exc:  # committed all the same: the next write or open deletes them
                log.warning("old passages stay in the search engine for now (%s)", exc)
        self._save_derived(self.manifest().generation)

    def _replay_pending_deletes(self, batch: int = 10_000) -> None:
        """Remove from the shared indexes the passages the database no longer holds (`pending_deletes`), then
        forget them. Idempotent: two replicas replaying the same keys do no harm."""
        shared = [index for index in self._derived() if index.shared]
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
                for part in _chunks(keys):
                    conn.execute(sa.delete(db.pending_deletes).where(table.key.in_(part)))

    # --- reads ---------------------------------------------------------------------------------
    def scope(self, filters: Filters | None) -> Scope:
        """What a search may return: every passage (None), or those whose article passes `filters`."""
        return Scope(filters, self.keys_matching)

    def search(self, queries: np.ndarray, k: int, *, scope: Scope | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, keys) per query row, within `scope`; missing slots have key -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = queries.shape[0]
        none = np.zeros((n, 0), dtype=np.float32), np.full((n, 0), -1, dtype=np.int64)
        if k <= 0:
            return none
        index = self.index
        if index.shared:  # the engine filters by itself, and counts no rows first
            return tuple(index.search(queries, k, filters=scope.filters if scope else None))  # type: ignore[return-value]
        allowed = scope.keys() if scope else None
        with self._lock:
            size = len(index)
            pool = size if allowed is None else min(len(allowed), size)
            if pool == 0:
                return none
            scores, keys = index.search(queries, min(k, pool), allowed)
        return scores, keys

    def search_lexical(self, query: Query, k: int, *, scope: Scope | None = None) -> LexicalHits:
        """The top `k` BM25 matches of one question within `scope` (see `LexicalIndex.search`)."""
        if self.lexical.shared:
            return self.lexical.search(query, k, filters=scope.filters if scope else None)
        return self.lexical.search(query, k, scope.keys() if scope else None)

    def lexical_scores(self, query: Query, keys: Sequence[int]) -> np.ndarray:
        """BM25 of one question for each of `keys` (0 where it shares no term)."""
        return self.lexical.scores_for(query, keys)

    def idf(self, terms: Sequence[str], folded: bool) -> list[float]:
        """BM25 idf of each of `terms` among the passages, as accented syllables or accent-free ones (`folded`)."""
        field = "folded" if folded else "syllables"
        n_docs = len(self.lexical)
        return [idf(n_docs, df) for df in self.lexical.doc_freqs(field, terms)]

    def dense_scores(self, query: np.ndarray, keys: Sequence[int]) -> np.ndarray:
        """Inner product of one query vector with the stored vectors of `keys` (NaN for a key not stored).

        From the vector index's own copy where the backend keeps one (FAISS: in memory, the fast path), else from
        the database, the source of truth (slower, and much slower when its pages are not in the cache).
        """
        out = np.full(len(keys), np.nan, dtype=np.float32)
        if not keys:
            return out
        wanted = np.asarray(keys, dtype=np.int64)
        lookup = getattr(self.index, "lookup", None)
        with self._lock:
            if lookup is not None:
                present, vectors = lookup(wanted)
                out[present] = vectors @ query
                wanted = wanted[~present]  # not in the index: ask the database (normally none)
            if not len(wanted):
                return out
            stored = {
                key: np.frombuffer(blob, dtype=np.float32)
                for key, blob in self._rows_in(sa.select(_PASSAGE.key, _PASSAGE.vector), _PASSAGE.key, wanted.tolist())
            }
        for i, key in enumerate(keys):
            vector = stored.get(int(key))
            if vector is not None:
                out[i] = float(vector @ query)
        return out

    def _rows_in(self, query: sa.Select[Any], column: sa.ColumnElement[Any], values: Sequence[Any]) -> list[Any]:
        """The rows of `query` whose `column` is one of `values` (looked up a chunk of values at a time)."""
        rows: list[Any] = []
        with self.engine.connect() as conn:
            for part in _chunks(values):
                rows.extend(conn.execute(query.where(column.in_(part))))
        return rows

    def sentence_vectors(
        self, *, keys: Sequence[int] | None = None, passage_ids: Sequence[str] | None = None
    ) -> dict[Any, np.ndarray]:
        """Stored sentence vectors (float32 [sentences, dim]) by passage key, or by passage id when `passage_ids`
        are given; a passage stored without them is absent."""
        wanted: list[Any] = [int(k) for k in keys] if keys is not None else list(passage_ids or ())
        if not wanted:
            return {}
        vectors = db.sentence_vectors.c.vectors
        if keys is not None:
            column: sa.ColumnElement[Any] = db.sentence_vectors.c.key
            query = sa.select(column, vectors)
        else:
            column = _PASSAGE.id
            query = sa.select(column, vectors).join_from(db.sentence_vectors, db.passages)
        dim = self._dim
        with self._lock:
            rows = self._rows_in(query, column, wanted)
        return {name: np.frombuffer(blob, dtype=np.float16).reshape(-1, dim).astype(np.float32) for name, blob in rows}

    def title_vectors(self, article_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored title vectors (float32 [dim]) by article id; an article stored without one is absent."""
        table = db.title_vectors.c
        with self._lock:
            rows = self._rows_in(
                sa.select(table.article_id, table.vector), table.article_id, list(dict.fromkeys(article_ids))
            )
        return {name: np.frombuffer(blob, dtype=np.float16).astype(np.float32) for name, blob in rows}

    def titles_without_vectors(self) -> list[tuple[str, str]]:
        """(article id, title) of the articles with sentence vectors but no title vector, in id order."""
        a, t, p, sv = db.articles.c, db.title_vectors.c, db.passages.c, db.sentence_vectors.c
        with_title = sa.exists(sa.select(t.article_id).where(t.article_id == a.id))
        with_sentences = sa.exists(
            sa.select(p.key)
            .select_from(db.passages.join(db.sentence_vectors, sv.key == p.key))
            .where(p.article_id == a.id)
        )
        query = sa.select(a.id, a.title).where(~with_title, with_sentences).order_by(a.id)
        with self._lock, self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(str(i), str(title)) for i, title in rows]

    def add_title_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """Store title vectors of articles already indexed (an article since removed is skipped), in one
        transaction; the derived indexes do not read them, so the generation stays."""
        dim = self.manifest().dim
        if any(np.shape(v) != (dim,) for v in vectors.values()):
            raise ValueError(f"title vectors of {dim} dimensions expected")
        if not vectors:
            return
        with self._lock, self.engine.begin() as conn:
            present = set(
                conn.execute(sa.select(db.articles.c.id).where(db.articles.c.id.in_(list(vectors)))).scalars()
            )
            rows = [
                {"article_id": i, "vector": np.ascontiguousarray(v, dtype=np.float16).tobytes()}
                for i, v in vectors.items()
                if i in present
            ]
            db.insert_or_replace(conn, db.title_vectors, rows)

    def has_sentence_vectors(self) -> bool:
        """Whether the index holds sentence and title vectors (an index built before titles had them does not)."""
        query = sa.select(
            sa.exists(sa.select(db.sentence_vectors.c.key)), sa.exists(sa.select(db.title_vectors.c.article_id))
        )
        with self._lock, self.engine.connect() as conn:
            row = conn.execute(query).one()
        return bool(row[0] and row[1])

    def keys_matching(self, filters: Filters) -> np.ndarray:
        """Passage keys whose article passes every given filter (an article with no date fails a date filter)."""
        clauses: list[sa.ColumnElement[bool]] = []
        if filters.published_from is not None:
            clauses.append(_ARTICLE.published_at >= _local_time(filters.published_from).isoformat())
        if filters.published_to is not None:
            clauses.append(_ARTICLE.published_at <= _local_time(filters.published_to).isoformat())
        if filters.sources is not None:
            clauses.append(_ARTICLE.source.in_(filters.sources))
        if filters.article_ids is not None:
            clauses.append(_ARTICLE.id.in_(filters.article_ids))
        query = sa.select(_PASSAGE.key).join_from(db.passages, db.articles).where(sa.and_(sa.true(), *clauses))
        with self._lock, self.engine.connect() as conn:
            keys = list(conn.scalars(query))
        return np.fromiter(keys, dtype=np.int64, count=len(keys))

    def passages_of(self, article_id: str) -> list[Passage]:
        query = sa.select(*_PASSAGE_COLUMNS).where(_PASSAGE.article_id == article_id).order_by(_PASSAGE.ordinal)
        with self._lock, self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_passage_from_row(r) for r in rows]

    def passages_by_key(self, keys: Sequence[int]) -> dict[int, StoredPassage]:
        """The passages of `keys` with their articles, readings and title vectors, in one query (a key no longer
        stored is absent)."""
        if not len(keys):
            return {}
        readings, titles = db.passage_readings.c, db.title_vectors.c
        query = (
            sa.select(
                _PASSAGE.key,
                *_PASSAGE_COLUMNS,
                *db.articles.c,
                readings.readings,
                titles.vector.label("title_vector"),
            )
            .join_from(db.passages, db.articles)
            .outerjoin(db.passage_readings, readings.key == _PASSAGE.key)
            .outerjoin(db.title_vectors, titles.article_id == _ARTICLE.id)
        )
        with self._lock:
            rows = self._rows_in(query, _PASSAGE.key, [int(k) for k in keys])
        out: dict[int, StoredPassage] = {}
        for row in rows:
            r = row._mapping
            title = r["title_vector"]
            out[r["key"]] = StoredPassage(
                r["key"],
                _passage_from_row(r),
                _article_from_row(r),
                r["readings"],
                None if title is None else np.frombuffer(title, dtype=np.float16).astype(np.float32),
            )
        return out

    def article(self, article_id: str) -> Article | None:
        with self._lock, self.engine.connect() as conn:
            row = conn.execute(sa.select(db.articles).where(_ARTICLE.id == article_id)).mappings().first()
        return _article_from_row(row) if row else None

    def articles(self, *, offset: int = 0, limit: int | None = None) -> list[Article]:
        query = sa.select(db.articles).order_by(_ARTICLE.id).limit(limit).offset(offset)
        with self._lock, self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [_article_from_row(r) for r in rows]

    def fingerprints(self, origin: str | None = None, *, ids: Sequence[str] | None = None) -> dict[str, str]:
        """Article id → fingerprint, optionally only for articles of one origin ("seed", "api", ...), or only for
        those of `ids` that are stored."""
        query = sa.select(_ARTICLE.id, _ARTICLE.fingerprint)
        if origin:
            query = query.where(_ARTICLE.origin == origin)
        if ids is not None:
            return {str(i): str(f) for i, f in self._rows_in(query, _ARTICLE.id, list(dict.fromkeys(ids)))}
        with self._lock, self.engine.connect() as conn:
            return {article_id: fingerprint for article_id, fingerprint in conn.execute(query)}

    def ids_by_origin(self) -> dict[str, list[str]]:
        with self._lock, self.engine.connect() as conn:
            rows = conn.execute(sa.select(_ARTICLE.origin, _ARTICLE.id).order_by(_ARTICLE.id)).all()
        out: dict[str, list[str]] = {}
        for origin, article_id in rows:
            out.setdefault(origin, []).append(article_id)
        return out

    def passage_counts(self, article_ids: Sequence[str]) -> dict[str, int]:
        """Passages of each of `article_ids` (0 for an article not stored)."""
        query = sa.select(_PASSAGE.article_id, sa.func.count()).group_by(_PASSAGE.article_id)
        counts: dict[str, int] = dict.fromkeys(article_ids, 0)
        with self._lock, self.engine.connect() as conn:
            for part in _chunks(list(counts)):
                counts.update((str(i), int(n)) for i, n in conn.execute(query.where(_PASSAGE.article_id.in_(part))))
        return counts

    def close(self) -> None:
        with self._lock:
            self.engine.dispose()
            if self._lexical is not None:
                self._lexical.close()
            if self._index is not None:
                self._index.close()
