"""One index on disk: a SQLite table of articles and passages, a vector index (`qa.vectors`), `manifest.json`.

SQLite is the source of truth and the commit point: every write is one transaction that also stores the
passage vectors and bumps a generation counter. The vector index (FAISS files, or a Milvus collection) is a
derived cache saved after the commit (write aside, fsync, rename); if a crash leaves it behind the database,
or its kind does not suit the corpus size, `Store.open` rebuilds it from the stored vectors. The lexical
index (`qa.lexical`, tantivy segments in `lexical/`) is derived the same way (`qa.derived`): applied and stamped after
every commit, rebuilt from the stored passages at open when its stamp is not the database's generation. The store
knows nothing of parsing, chunking or models.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from qa.dates import VIETNAM_TZ
from qa.derived import DerivedIndex, PassageRow
from qa.domain import Article, Passage, encoder_input
from qa.files import atomic_write_bytes
from qa.lexical import LexicalHits, LexicalIndex, create_lexical_index, idf, open_lexical_index
from qa.query import Query
from qa.schemas import Filters
from qa.vectors import VectorConfig, VectorIndex, VectorIndexError, load_vector_index, make_vector_index
from qa.vectors.faiss import INDEX_FILE, choose_kind

log = logging.getLogger(__name__)

D = TypeVar("D", bound=DerivedIndex)

FORMAT_VERSION = 1
DB_FILE = "store.sqlite"
FAISS_FILE = INDEX_FILE
MANIFEST_FILE = "manifest.json"
LEXICAL_DIR = "lexical"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    published_at TEXT,
    source TEXT,
    author TEXT,
    url TEXT,
    fingerprint TEXT NOT NULL,
    origin TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    key INTEGER PRIMARY KEY AUTOINCREMENT,   -- the FAISS id; never reused
    id TEXT NOT NULL UNIQUE,                  -- the stable public id, "<article id>:<ordinal>"
    article_id TEXT NOT NULL REFERENCES articles(id) ON DELETE CASCADE,
    ordinal INTEGER NOT NULL,
    start INTEGER NOT NULL,
    end INTEGER NOT NULL,
    text TEXT NOT NULL,
    sentences TEXT NOT NULL,                  -- JSON [[start, end], ...] relative to text
    vector BLOB NOT NULL                      -- float32, L2-normalised
);
CREATE INDEX IF NOT EXISTS passages_article ON passages(article_id, ordinal);
CREATE TABLE IF NOT EXISTS sentence_vectors (  -- optional: one vector per sentence of a passage
    key INTEGER PRIMARY KEY REFERENCES passages(key) ON DELETE CASCADE,
    vectors BLOB NOT NULL                      -- float16 [sentences, dim], L2-normalised, in sentence order
);
CREATE TABLE IF NOT EXISTS title_vectors (     -- optional, with the sentence vectors: the title read as a sentence
    article_id TEXT PRIMARY KEY REFERENCES articles(id) ON DELETE CASCADE,
    vector BLOB NOT NULL                       -- float16 [dim], L2-normalised
);
"""


class StoreError(RuntimeError):
    """The index directory is missing, corrupt, or of another format; the message says how to rebuild."""


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


def _article_row(article: Article, origin: str) -> tuple[Any, ...]:
    published = article.published_at.isoformat() if article.published_at else None
    return (
        article.id,
        article.title,
        article.body,
        published,
        article.source,
        article.author,
        article.url,
        article.fingerprint,
        origin,
        time.time(),
    )


def _article_from_row(row: sqlite3.Row) -> Article:
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


def _passage_from_row(row: sqlite3.Row, id_column: str = "id") -> Passage:
    return Passage(
        id=row[id_column],
        article_id=row["article_id"],
        ordinal=row["ordinal"],
        text=row["text"],
        start=row["start"],
        end=row["end"],
        sentences=tuple((int(a), int(b)) for a, b in json.loads(row["sentences"])),
    )


class Store:
    """Articles, passages and their vectors in one directory; safe to share between threads."""

    def __init__(self, path: Path, conn: sqlite3.Connection, vectors: VectorConfig) -> None:
        self.path = path
        self._conn = conn
        self.vectors = vectors
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
    ) -> Store:
        """A new, empty store in `path` (which must not exist or be empty); `vectors` says where its passage vectors
        are searched (FAISS files beside the database unless told otherwise)."""
        path = Path(path)
        if path.exists() and any(path.iterdir()):
            raise StoreError(f"cannot create an index in {path}: the folder is not empty")
        path.mkdir(parents=True, exist_ok=True)
        conn = cls._connect(path / DB_FILE)
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
        }
        with conn:
            conn.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in meta.items()]
            )
        store = cls(path, conn, vectors)
        store._index = store._new_vector_index(dim, 0)
        store._lexical = create_lexical_index(path / LEXICAL_DIR)
        store._save_derived(0)
        return store

    @classmethod
    def open(cls, path: Path, *, vectors: VectorConfig = VectorConfig()) -> Store:  # noqa: B008 (frozen)
        """Open an existing store; rebuilds a derived index from the database when it is not current (or the vector
        index is of the wrong kind for the corpus size)."""
        path = Path(path)
        db = path / DB_FILE
        if not db.is_file():
            raise StoreError(f"no index at {path} ({DB_FILE} missing): build one with `qa index`")
        try:
            conn = cls._connect(db)
            version = int(json.loads(conn.execute("SELECT value FROM meta WHERE key='format_version'").fetchone()[0]))
        except (sqlite3.DatabaseError, TypeError, ValueError) as exc:
            raise StoreError(f"index at {path} is corrupt ({exc}): rebuild it with `qa index --rebuild`") from exc
        if version != FORMAT_VERSION:
            conn.close()
            raise StoreError(
                f"index at {path} has format {version}, this version reads {FORMAT_VERSION}: "
                "rebuild it with `qa index --rebuild`"
            )
        store = cls(path, conn, vectors)
        try:
            store._index = store._load_vectors()
            store._lexical = store._load_lexical()
        except sqlite3.DatabaseError as exc:  # damage past the header only shows when the pages are read
            conn.close()
            raise StoreError(f"index at {path} is corrupt ({exc}): rebuild it with `qa index --rebuild`") from exc
        return store

    @staticmethod
    def _connect(db: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        # Reads through a memory map of the file (the OS page cache; SQLite caps it at 2 GiB) instead of a read()
        # per page into a 2 MB private cache: much faster for the scattered reads of the candidates' sentence
        # vectors (benchmarks/README.md, "Latency"). Writes still go through the WAL.
        conn.execute("PRAGMA mmap_size=2147418112")
        conn.executescript(_SCHEMA)
        conn.isolation_level = "DEFERRED"  # from here on, `with conn:` wraps a real transaction
        return conn

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

    def _load_vectors(self) -> VectorIndex:
        """The saved vector index if it is current and of the kind the corpus size calls for, else a rebuilt one."""
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

    def _load_lexical(self) -> LexicalIndex:
        """The saved lexical index if it is current, else one rebuilt from the stored passages (the analysis is
        Python: the larger part of a rebuild's time)."""
        return self._current_or_rebuilt(
            "lexical",
            open_lexical_index(self.path / LEXICAL_DIR),
            lambda: create_lexical_index(self.path / LEXICAL_DIR),
        )

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
        if vectors:
            sql = "SELECT key, '', vector FROM passages ORDER BY key"
        else:
            sql = "SELECT p.key, a.title, p.text FROM passages p JOIN articles a ON a.id = p.article_id ORDER BY p.key"
        cursor = self._conn.execute(sql)
        none = np.empty(0, dtype=np.float32)
        while rows := cursor.fetchmany(batch):
            if vectors:
                yield [PassageRow(r[0], "", np.frombuffer(r[2], dtype=np.float32)) for r in rows]
            else:
                yield [PassageRow(r[0], encoder_input(r[1], r[2]), none) for r in rows]

    # --- metadata ------------------------------------------------------------------------------
    def _meta(self) -> dict[str, Any]:
        return {r["key"]: json.loads(r["value"]) for r in self._conn.execute("SELECT key, value FROM meta")}

    def manifest(self) -> Manifest:
        with self._lock:
            meta = self._meta()
            articles = self._conn.execute("SELECT COUNT(*) FROM articles").fetchone()[0]
            passages = self._conn.execute("SELECT COUNT(*) FROM passages").fetchone()[0]
            index = self._index
        if index is not None:  # the derived index, as it is now (the stored value is only the kind at creation)
            meta["index_kind"] = index.kind
            meta["vector_index"] = index.describe()
        known = set(Manifest.__dataclass_fields__) - {"articles", "passages", "extra"}
        return Manifest(
            **{k: meta[k] for k in known},
            articles=articles,
            passages=passages,
            extra={k: v for k, v in meta.items() if k not in known},
        )

    def set_meta(self, **values: Any) -> None:
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in values.items()],
            )
        self._write_manifest()

    def _write_manifest(self) -> None:
        data = asdict(self.manifest())
        atomic_write_bytes(self.path / MANIFEST_FILE, json.dumps(data, ensure_ascii=False, indent=2).encode())

    def _save_derived(self, generation: int) -> None:
        """Each derived index stamped with `generation`, then the manifest (for people: the stamps decide)."""
        self.index.save(generation)
        self.lexical.save(generation)
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
        with self._lock:
            ids = [a.id for a, _, _ in items]
            old_keys = self._keys_of(ids)
            new_keys: list[int] = []
            new_texts: list[str] = []
            new_vectors: list[np.ndarray] = []
            with self._conn:
                self._conn.executemany("DELETE FROM articles WHERE id = ?", [(i,) for i in ids])
                self._conn.executemany(
                    "INSERT INTO articles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [_article_row(a, origin) for a, _, _ in items],
                )
                for n, (article, passages, vectors) in enumerate(items):
                    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                    first = len(new_keys)
                    new_texts.extend(encoder_input(article.title, p.text) for p in passages)
                    for passage, vector in zip(passages, vectors, strict=True):
                        cur = self._conn.execute(
                            "INSERT INTO passages(id, article_id, ordinal, start, end, text, sentences, vector)"
                            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                passage.id,
                                passage.article_id,
                                passage.ordinal,
                                passage.start,
                                passage.end,
                                passage.text,
                                json.dumps(passage.sentences),
                                vector.tobytes(),
                            ),
                        )
                        new_keys.append(int(cur.lastrowid or 0))
                    if sentence_vectors is not None:
                        self._conn.executemany(
                            "INSERT INTO sentence_vectors(key, vectors) VALUES (?, ?)",
                            [
                                (key, np.ascontiguousarray(v, dtype=np.float16).tobytes())
                                for key, v in zip(new_keys[first:], sentence_vectors[n], strict=True)
                            ],
                        )
                    new_vectors.append(vectors)
                if title_vectors is not None:
                    self._conn.executemany(
                        "INSERT INTO title_vectors(article_id, vector) VALUES (?, ?)",
                        [
                            (a.id, np.ascontiguousarray(v, dtype=np.float16).tobytes())
                            for (a, _, _), v in zip(items, title_vectors, strict=True)
                        ],
                    )
                self._bump_generation()
            vectors_added = np.vstack(new_vectors)
            rows = [PassageRow(k, t, v) for k, t, v in zip(new_keys, new_texts, vectors_added, strict=True)]
            self._apply_derived(old_keys, rows)

    def delete(self, article_ids: Iterable[str]) -> int:
        """Remove articles and their passages; returns how many articles existed."""
        ids = list(article_ids)
        with self._lock:
            old_keys = self._keys_of(ids)
            with self._conn:
                removed = sum(self._conn.execute("DELETE FROM articles WHERE id = ?", (i,)).rowcount for i in ids)
                if removed:
                    self._bump_generation()
            if removed:
                self._apply_derived(old_keys, [])
        return removed

    def _keys_of(self, article_ids: Sequence[str]) -> list[int]:
        keys: list[int] = []
        for i in article_ids:
            keys.extend(r[0] for r in self._conn.execute("SELECT key FROM passages WHERE article_id = ?", (i,)))
        return keys

    def _bump_generation(self) -> None:
        self._conn.execute("UPDATE meta SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT) WHERE key = 'generation'")
        self._conn.execute(
            "INSERT OR REPLACE INTO meta(key, value) VALUES ('updated_at', ?)",
            (json.dumps(datetime.now().isoformat(timespec="seconds")),),
        )

    def _apply_derived(self, removed: list[int], added: list[PassageRow]) -> None:
        """A committed write, applied to each derived index, then saved with the database's new generation."""
        self.index.apply(removed, added)
        self.lexical.apply(removed, added)
        self._save_derived(self.manifest().generation)

    # --- reads ---------------------------------------------------------------------------------
    def search(
        self, queries: np.ndarray, k: int, *, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, keys) per query row, optionally only among `allowed` keys; missing slots have key -1."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = queries.shape[0]
        with self._lock:
            size = len(self.index)
            pool = size if allowed is None else min(len(allowed), size)
            if pool == 0 or k <= 0:
                return np.zeros((n, 0), dtype=np.float32), np.full((n, 0), -1, dtype=np.int64)
            scores, keys = self.index.search(queries, min(k, pool), allowed)
        return scores, keys

    def search_lexical(self, query: Query, k: int, *, allowed: np.ndarray | None = None) -> LexicalHits:
        """The top `k` BM25 matches of one question (see `LexicalIndex.search`)."""
        return self.lexical.search(query, k, allowed)

    def lexical_scores(self, query: Query, keys: Sequence[int]) -> np.ndarray:
        """BM25 of one question for each of `keys` (0 where it shares no term)."""
        return self.lexical.scores_for(query, keys)

    def idf(self, terms: Sequence[str], folded: bool) -> list[float]:
        """BM25 idf of each of `terms` among the passages, as accented syllables or accent-free ones (`folded`)."""
        field = "folded" if folded else "syllables"
        n_docs = len(self.lexical)
        return [idf(n_docs, self.lexical.doc_freq(field, term)) for term in terms]

    def dense_scores(self, query: np.ndarray, keys: Sequence[int]) -> np.ndarray:
        """Inner product of one query vector with the stored vectors of `keys` (NaN for a key not stored).

        From the vector index's own copy where the backend keeps one (FAISS: in memory, the fast path), else from
        SQLite, the source of truth (slower, and much slower when its pages are not in the cache).
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
                wanted = wanted[~present]  # not in the index: ask SQLite (normally none)
            if not len(wanted):
                return out
            marks = ",".join("?" * len(wanted))
            rows = self._conn.execute(
                f"SELECT key, vector FROM passages WHERE key IN ({marks})", wanted.tolist()
            ).fetchall()
        stored = {key: np.frombuffer(blob, dtype=np.float32) for key, blob in rows}
        for i, key in enumerate(keys):
            vector = stored.get(int(key))
            if vector is not None:
                out[i] = float(vector @ query)
        return out

    def sentence_vectors(
        self, *, keys: Sequence[int] | None = None, passage_ids: Sequence[str] | None = None
    ) -> dict[Any, np.ndarray]:
        """Stored sentence vectors (float32 [sentences, dim]) by passage key, or by passage id when `passage_ids`
        are given; a passage stored without them is absent."""
        wanted: list[Any] = [int(k) for k in keys] if keys is not None else list(passage_ids or ())
        if not wanted:
            return {}
        column = "s.key" if keys is not None else "p.id"
        join = "" if keys is not None else " JOIN passages p ON p.key = s.key"
        out: dict[Any, np.ndarray] = {}
        with self._lock:
            dim = int(self._meta()["dim"])
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                part = wanted[start : start + 500]
                rows = self._conn.execute(
                    f"SELECT {column}, s.vectors FROM sentence_vectors s{join}"
                    f" WHERE {column} IN ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
                for name, blob in rows:
                    out[name] = np.frombuffer(blob, dtype=np.float16).reshape(-1, dim).astype(np.float32)
        return out

    def title_vectors(self, article_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored title vectors (float32 [dim]) by article id; an article stored without one is absent."""
        wanted = list(dict.fromkeys(article_ids))
        out: dict[str, np.ndarray] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
                part = wanted[start : start + 500]
                rows = self._conn.execute(
                    f"SELECT article_id, vector FROM title_vectors WHERE article_id IN ({','.join('?' * len(part))})",
                    part,
                ).fetchall()
                out.update((name, np.frombuffer(blob, dtype=np.float16).astype(np.float32)) for name, blob in rows)
        return out

    def titles_without_vectors(self) -> list[tuple[str, str]]:
        """(article id, title) of the articles with sentence vectors but no title vector, in id order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT a.id, a.title FROM articles a"
                " WHERE NOT EXISTS (SELECT 1 FROM title_vectors t WHERE t.article_id = a.id)"
                " AND EXISTS (SELECT 1 FROM passages p JOIN sentence_vectors s ON s.key = p.key"
                " WHERE p.article_id = a.id) ORDER BY a.id"
            ).fetchall()
        return [(str(i), str(t)) for i, t in rows]

    def add_title_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """Store title vectors of articles already indexed (an article since removed is skipped), in one
        transaction; the derived indexes do not read them, so the generation stays."""
        dim = self.manifest().dim
        if any(np.shape(v) != (dim,) for v in vectors.values()):
            raise ValueError(f"title vectors of {dim} dimensions expected")
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO title_vectors(article_id, vector) SELECT id, ? FROM articles WHERE id = ?",
                [(np.ascontiguousarray(v, dtype=np.float16).tobytes(), i) for i, v in vectors.items()],
            )

    def has_sentence_vectors(self) -> bool:
        """Whether the index holds sentence and title vectors (an index built before titles had them does not)."""
        with self._lock:
            return (
                self._conn.execute(
                    "SELECT EXISTS(SELECT 1 FROM sentence_vectors) AND EXISTS(SELECT 1 FROM title_vectors)"
                ).fetchone()[0]
                == 1
            )

    def keys_matching(self, filters: Filters) -> np.ndarray:
        """Passage keys whose article passes every given filter (an article with no date fails a date filter)."""
        clauses: list[str] = []
        params: list[Any] = []
        if filters.published_from is not None:
            clauses.append("a.published_at >= ?")
            params.append(_local_time(filters.published_from).isoformat())
        if filters.published_to is not None:
            clauses.append("a.published_at <= ?")
            params.append(_local_time(filters.published_to).isoformat())
        if filters.sources is not None:
            clauses.append(f"a.source IN ({','.join('?' * len(filters.sources))})")
            params.extend(filters.sources)
        if filters.article_ids is not None:
            clauses.append(f"a.id IN ({','.join('?' * len(filters.article_ids))})")
            params.extend(filters.article_ids)
        where = " AND ".join(clauses) or "1"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT p.key FROM passages p JOIN articles a ON a.id = p.article_id WHERE {where}", params
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def passages_of(self, article_id: str) -> list[Passage]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT id, article_id, ordinal, start, end, text, sentences FROM passages"
                " WHERE article_id = ? ORDER BY ordinal",
                (article_id,),
            ).fetchall()
        return [_passage_from_row(r) for r in rows]

    def passages_by_key(self, keys: Sequence[int]) -> dict[int, StoredPassage]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._conn.execute(
                f"SELECT p.key, p.id AS pid, p.article_id, p.ordinal, p.start, p.end, p.text, p.sentences, a.*"
                f" FROM passages p JOIN articles a ON a.id = p.article_id WHERE p.key IN ({marks})",
                [int(k) for k in keys],
            ).fetchall()
        out: dict[int, StoredPassage] = {}
        for r in rows:
            out[r["key"]] = StoredPassage(r["key"], _passage_from_row(r, id_column="pid"), _article_from_row(r))
        return out

    def article(self, article_id: str) -> Article | None:
        with self._lock:
            row = self._conn.execute("SELECT * FROM articles WHERE id = ?", (article_id,)).fetchone()
        return _article_from_row(row) if row else None

    def articles(self, *, offset: int = 0, limit: int | None = None) -> list[Article]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT * FROM articles ORDER BY id LIMIT ? OFFSET ?", (-1 if limit is None else limit, offset)
            ).fetchall()
        return [_article_from_row(r) for r in rows]

    def fingerprints(self, origin: str | None = None) -> dict[str, str]:
        """Article id → fingerprint, optionally only for articles of one origin ("seed", "api", ...)."""
        sql = "SELECT id, fingerprint FROM articles" + (" WHERE origin = ?" if origin else "")
        with self._lock:
            return dict(self._conn.execute(sql, (origin,) if origin else ()).fetchall())

    def ids_by_origin(self) -> dict[str, list[str]]:
        with self._lock:
            rows = self._conn.execute("SELECT origin, id FROM articles ORDER BY id").fetchall()
        out: dict[str, list[str]] = {}
        for origin, article_id in rows:
            out.setdefault(origin, []).append(article_id)
        return out

    def passage_counts(self, article_ids: Sequence[str]) -> dict[str, int]:
        with self._lock:
            return {
                i: self._conn.execute("SELECT COUNT(*) FROM passages WHERE article_id = ?", (i,)).fetchone()[0]
                for i in article_ids
            }

    def close(self) -> None:
        with self._lock:
            self._conn.close()
            if self._lexical is not None:
                self._lexical.close()
            if self._index is not None:
                self._index.close()
