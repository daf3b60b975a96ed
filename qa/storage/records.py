"""Reads of an index's database: rows mapped to the domain's types, the filter SQL, and each stored passage as the
derived indexes read it (`PassageRow`, built here only). No Python lock: the database isolates readers from writers
(SQLite in WAL mode, PostgreSQL's snapshots), so a read never waits for a write."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine, RowMapping

from qa import database as db
from qa.dates import VIETNAM_TZ
from qa.derived import PassageRow
from qa.domain import Article, Passage, encoder_input
from qa.reading import Reading
from qa.reading import loads as loads_readings
from qa.schemas import Filters

PASSAGE = db.passages.c
ARTICLE = db.articles.c
# A passage as `passage_from_row` reads it, its id under another name so that it can stand beside its article's.
_PASSAGE_COLUMNS = (
    PASSAGE.id.label("passage_id"),
    PASSAGE.article_id,
    PASSAGE.ordinal,
    PASSAGE.start,
    PASSAGE.end,
    PASSAGE.text,
    PASSAGE.sentences,
)
# Bound parameters per statement when looking rows up by a list of values: far below SQLite's limit (32,766)
# and PostgreSQL's (65,535).
_IN_CHUNK = 500


@dataclass(frozen=True, slots=True)
class StoredPassage:
    key: int
    passage: Passage
    article: Article
    readings: str | None = None  # what answer selection reads of it (`qa.reading.dumps`); None: stored before them
    title_vector: np.ndarray | None = None  # its article's title vector (float32), when the index stores them

    def decoded_readings(self) -> list[Reading] | None:
        return None if self.readings is None else loads_readings(self.readings)


def article_row(article: Article, origin: str) -> dict[str, Any]:
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


def passage_rows_to_insert(passages: Sequence[Passage], vectors: np.ndarray) -> list[dict[str, Any]]:
    return [
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


def article_from_row(row: RowMapping) -> Article:
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


def passage_from_row(row: RowMapping) -> Passage:
    return Passage(
        id=row["passage_id"],
        article_id=row["article_id"],
        ordinal=row["ordinal"],
        text=row["text"],
        start=row["start"],
        end=row["end"],
        sentences=tuple((int(a), int(b)) for a, b in json.loads(row["sentences"])),
    )


def local_time(value: datetime) -> datetime:
    """The store's clock: naive Vietnam local time (an aware bound is converted to it)."""
    return value.astimezone(VIETNAM_TZ).replace(tzinfo=None) if value.tzinfo else value


def chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for start in range(0, len(values), _IN_CHUNK):
        yield values[start : start + _IN_CHUNK]


def rows_in(
    conn: sa.Connection, query: sa.Select[Any], column: sa.ColumnElement[Any], values: Sequence[Any]
) -> list[Any]:
    """The rows of `query` whose `column` is one of `values` (looked up a chunk of values at a time)."""
    rows: list[Any] = []
    for part in chunks(values):
        rows.extend(conn.execute(query.where(column.in_(part))))
    return rows


def passage_rows(
    conn: sa.Connection, *, keys: Sequence[int] | None = None, text: bool = True, vector: bool = True,
    batch: int = 10_000,
) -> Iterator[list[PassageRow]]:  # fmt: skip
    """Stored passages as the derived indexes read them (those of `keys`, else every one in key order), a batch at
    a time; with their text (`encoder_input` of title and passage) and their vector where asked (else empty)."""
    none, a = np.empty(0, dtype=np.float32), ARTICLE
    columns = (PASSAGE.key, PASSAGE.text if text else sa.null(), PASSAGE.vector if vector else sa.null(), a.title)
    query = sa.select(*columns, a.id, a.source, a.published_at).join_from(db.passages, db.articles)

    def row(r: Any) -> PassageRow:
        vec = np.frombuffer(r[2], dtype=np.float32) if vector else none
        return PassageRow(int(r[0]), encoder_input(r[3], r[1]) if text else "", vec, r[4], r[5], r[6])

    if keys is not None:
        for part in chunks(keys):
            yield [row(r) for r in conn.execute(query.where(PASSAGE.key.in_(part)).order_by(PASSAGE.key))]
        return
    for rows in conn.execute(query.order_by(PASSAGE.key), execution_options={"yield_per": batch}).partitions():
        yield [row(r) for r in rows]


def keys_of(conn: sa.Connection, article_ids: Sequence[str]) -> list[int]:
    """The passage keys of `article_ids`."""
    keys: list[int] = []
    for part in chunks(article_ids):
        keys.extend(conn.scalars(sa.select(PASSAGE.key).where(PASSAGE.article_id.in_(part))))
    return keys


class Records:
    """The reads of one index's database."""

    def __init__(self, engine: Engine, dim: int) -> None:
        self.engine = engine
        self.dim = dim

    def _rows_in(self, query: sa.Select[Any], column: sa.ColumnElement[Any], values: Sequence[Any]) -> list[Any]:
        with self.engine.connect() as conn:
            return rows_in(conn, query, column, values)

    def vectors(self, keys: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored passage vectors by key (a key not stored is absent)."""
        rows = self._rows_in(sa.select(PASSAGE.key, PASSAGE.vector), PASSAGE.key, [int(k) for k in keys])
        return {int(key): np.frombuffer(blob, dtype=np.float32) for key, blob in rows}

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
            column = PASSAGE.id
            query = sa.select(column, vectors).join_from(db.sentence_vectors, db.passages)
        dim = self.dim
        rows = self._rows_in(query, column, wanted)
        return {name: np.frombuffer(blob, dtype=np.float16).reshape(-1, dim).astype(np.float32) for name, blob in rows}

    def title_vectors(self, article_ids: Sequence[str]) -> dict[str, np.ndarray]:
        """Stored title vectors (float32 [dim]) by article id; an article stored without one is absent."""
        table = db.title_vectors.c
        query = sa.select(table.article_id, table.vector)
        rows = self._rows_in(query, table.article_id, list(dict.fromkeys(article_ids)))
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
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [(str(i), str(title)) for i, title in rows]

    def has_sentence_vectors(self) -> bool:
        """Whether the index holds sentence and title vectors (an index built before titles had them does not)."""
        query = sa.select(
            sa.exists(sa.select(db.sentence_vectors.c.key)), sa.exists(sa.select(db.title_vectors.c.article_id))
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).one()
        return bool(row[0] and row[1])

    def keys_matching(self, filters: Filters) -> np.ndarray:
        """Passage keys whose article passes every given filter (an article with no date fails a date filter)."""
        clauses: list[sa.ColumnElement[bool]] = []
        if filters.published_from is not None:
            clauses.append(ARTICLE.published_at >= local_time(filters.published_from).isoformat())
        if filters.published_to is not None:
            clauses.append(ARTICLE.published_at <= local_time(filters.published_to).isoformat())
        if filters.sources is not None:
            clauses.append(ARTICLE.source.in_(filters.sources))
        if filters.article_ids is not None:
            clauses.append(ARTICLE.id.in_(filters.article_ids))
        query = sa.select(PASSAGE.key).join_from(db.passages, db.articles).where(sa.and_(sa.true(), *clauses))
        with self.engine.connect() as conn:
            keys = list(conn.scalars(query))
        return np.fromiter(keys, dtype=np.int64, count=len(keys))

    def passages_of(self, article_id: str) -> list[Passage]:
        query = sa.select(*_PASSAGE_COLUMNS).where(PASSAGE.article_id == article_id).order_by(PASSAGE.ordinal)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [passage_from_row(r) for r in rows]

    def passages_by_key(self, keys: Sequence[int]) -> dict[int, StoredPassage]:
        """The passages of `keys` with their articles, readings and title vectors, in one query (a key no longer
        stored is absent)."""
        if not len(keys):
            return {}
        readings, titles = db.passage_readings.c, db.title_vectors.c
        query = (
            sa.select(
                PASSAGE.key,
                *_PASSAGE_COLUMNS,
                *db.articles.c,
                readings.readings,
                titles.vector.label("title_vector"),
            )
            .join_from(db.passages, db.articles)
            .outerjoin(db.passage_readings, readings.key == PASSAGE.key)
            .outerjoin(db.title_vectors, titles.article_id == ARTICLE.id)
        )
        rows = self._rows_in(query, PASSAGE.key, [int(k) for k in keys])
        out: dict[int, StoredPassage] = {}
        for row in rows:
            r = row._mapping
            title = r["title_vector"]
            out[r["key"]] = StoredPassage(
                r["key"],
                passage_from_row(r),
                article_from_row(r),
                r["readings"],
                None if title is None else np.frombuffer(title, dtype=np.float16).astype(np.float32),
            )
        return out

    def article(self, article_id: str) -> Article | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(db.articles).where(ARTICLE.id == article_id)).mappings().first()
        return article_from_row(row) if row else None

    def articles(self, *, offset: int = 0, limit: int | None = None) -> list[Article]:
        query = sa.select(db.articles).order_by(ARTICLE.id).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        return [article_from_row(r) for r in rows]

    def fingerprints(self, origin: str | None = None, *, ids: Sequence[str] | None = None) -> dict[str, str]:
        """Article id → fingerprint of the stored articles: all of them, or those of one origin ("seed", "api",
        ...), or those among `ids` (an id not stored is absent: this also says which exist)."""
        query = sa.select(ARTICLE.id, ARTICLE.fingerprint)
        if origin:
            query = query.where(ARTICLE.origin == origin)
        if ids is not None:
            return dict(self._rows_in(query, ARTICLE.id, list(dict.fromkeys(ids))))
        with self.engine.connect() as conn:
            return {article_id: fingerprint for article_id, fingerprint in conn.execute(query)}

    def ids_by_origin(self) -> dict[str, list[str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(ARTICLE.origin, ARTICLE.id).order_by(ARTICLE.id)).all()
        out: dict[str, list[str]] = {}
        for origin, article_id in rows:
            out.setdefault(origin, []).append(article_id)
        return out

    def passage_counts(self, article_ids: Sequence[str]) -> dict[str, int]:
        """Passages of each of `article_ids` (0 for an article not stored)."""
        query = sa.select(PASSAGE.article_id, sa.func.count()).group_by(PASSAGE.article_id)
        counts: dict[str, int] = dict.fromkeys(article_ids, 0)
        rows = self._rows_in(query, PASSAGE.article_id, list(counts))
        counts.update((str(i), int(n)) for i, n in rows)
        return counts
