"""The one write transaction: articles, passages and their vectors stored in the database in one transaction, which
each participant joins before the commit (shared indexes, term counts, generation and counts) and follows after it
(the local indexes). Writers take turns (one lock); readers never take it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qa import database as db
from qa.derived import PassageRow
from qa.domain import Article, Passage
from qa.reading import dumps as dumps_readings
from qa.reading import passage_readings
from qa.storage.records import ARTICLE, PASSAGE, article_row, chunks, keys_of, passage_rows, passage_rows_to_insert

# What a write stores: articles with their passages and the passages' vectors; optionally per article a vector per
# sentence of each passage, and its title's vector.
Items = Sequence[tuple[Article, Sequence[Passage], np.ndarray]]
Sentences = Sequence[Sequence[np.ndarray]]
Titles = Sequence[np.ndarray]


@dataclass(frozen=True, slots=True)
class Change:
    """What one write does, as its participants read it."""

    removed: list[int]  # passage keys it removes
    removed_rows: list[PassageRow]  # those passages (their text only) when a participant reads them, else empty
    added: list[PassageRow]  # the passages it adds, as the derived indexes read them
    articles: int  # articles it adds less those it removes


class Participant(Protocol):
    reads_removed_text: bool  # whether `Change.removed_rows` must be read for it

    def before_commit(self, conn: sa.Connection, change: Change) -> None:
        """The write's last steps inside its transaction (a failure rolls it back)."""
        ...

    def after_commit(self, change: Change) -> None:
        """What follows the commit (a failure leaves the write committed: a derived index catches up at open)."""
        ...


class Writes:
    """Upserts and deletes of whole articles, one transaction each, the participants called in their order."""

    def __init__(
        self, engine: Engine, dim: int, participants: Sequence[Participant], before_write: Callable[[], None]
    ) -> None:
        self.engine = engine
        self.dim = dim
        self.participants = list(participants)
        self.before_write = before_write  # at the start of each write's turn (the shared indexes' pending deletes)
        self._lock = threading.Lock()

    @contextmanager
    def turn(self) -> Iterator[None]:
        """This writer's turn: no other write runs meanwhile (in this process)."""
        with self._lock:
            yield

    def _remove(self, conn: sa.Connection, article_ids: Sequence[str]) -> tuple[list[int], list[PassageRow], int]:
        """Delete `article_ids` (their writers of other processes wait: `lock_articles`): the keys of the passages
        that go with them, those passages' text where a participant reads it, and how many of the articles existed."""
        db.lock_articles(conn, article_ids)
        keys = keys_of(conn, article_ids)
        rows: list[PassageRow] = []
        if any(p.reads_removed_text for p in self.participants):
            rows = [row for part in passage_rows(conn, keys=keys, vector=False) for row in part]
        existed = sum(
            conn.execute(sa.delete(db.articles).where(ARTICLE.id.in_(part))).rowcount for part in chunks(article_ids)
        )
        return keys, rows, existed

    def _commit(self, conn: sa.Connection, change: Change) -> None:
        for participant in self.participants:
            participant.before_commit(conn, change)

    def _committed(self, change: Change) -> None:
        for participant in self.participants:
            participant.after_commit(change)

    def check(self, items: Items, sentence_vectors: Sentences | None, title_vectors: Titles | None) -> None:
        """ValueError unless every vector has the shape its passage, sentence or title calls for."""
        dim = self.dim
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

    def upsert(self, items: Items, origin: str, sentences: Sentences | None, titles: Titles | None) -> None:
        """Insert or replace whole articles with their passages and vectors, in one transaction (see `Store.upsert`)."""
        if not items:
            return
        self.check(items, sentences, titles)
        # Read before the transaction: it is pure CPU, and questions need not wait for it.
        readings = [[dumps_readings(passage_readings(a.title, p)) for p in passages] for a, passages, _ in items]
        ids = [a.id for a, _, _ in items]
        with self.turn():
            self.before_write()
            with self.engine.begin() as conn:
                removed, removed_rows, existed = self._remove(conn, ids)
                conn.execute(sa.insert(db.articles), [article_row(a, origin) for a, _, _ in items])
                added: list[int] = []
                for n, (_, passages, vectors) in enumerate(items):
                    if not passages:
                        continue
                    rows = passage_rows_to_insert(passages, np.ascontiguousarray(vectors, dtype=np.float32))
                    inserted = sa.insert(db.passages).returning(PASSAGE.key, sort_by_parameter_order=True)
                    keys = [int(key) for key in conn.scalars(inserted, rows)]
                    added.extend(keys)
                    conn.execute(
                        sa.insert(db.passage_readings),
                        [{"key": key, "readings": r} for key, r in zip(keys, readings[n], strict=True)],
                    )
                    if sentences is not None:
                        conn.execute(
                            sa.insert(db.sentence_vectors),
                            [
                                {"key": key, "vectors": np.ascontiguousarray(v, dtype=np.float16).tobytes()}
                                for key, v in zip(keys, sentences[n], strict=True)
                            ],
                        )
                if titles is not None:
                    conn.execute(
                        sa.insert(db.title_vectors),
                        [
                            {"article_id": a.id, "vector": np.ascontiguousarray(v, dtype=np.float16).tobytes()}
                            for (a, _, _), v in zip(items, titles, strict=True)
                        ],
                    )
                new_rows = [row for rows in passage_rows(conn, keys=added) for row in rows]
                change = Change(removed, removed_rows, new_rows, articles=len(items) - existed)
                self._commit(conn, change)
            self._committed(change)

    def delete(self, article_ids: Iterable[str]) -> int:
        """Remove articles and their passages; returns how many articles existed."""
        ids = list(dict.fromkeys(article_ids))
        with self.turn():
            self.before_write()
            with self.engine.begin() as conn:
                removed, removed_rows, existed = self._remove(conn, ids)
                change = Change(removed, removed_rows, [], articles=-existed)
                if existed:
                    self._commit(conn, change)
            if existed:
                self._committed(change)
        return existed

    def add_title_vectors(self, vectors: dict[str, np.ndarray]) -> None:
        """Store title vectors of articles already indexed (an article since removed is skipped), in one
        transaction; the derived indexes do not read them, so the generation stays."""
        if any(np.shape(v) != (self.dim,) for v in vectors.values()):
            raise ValueError(f"title vectors of {self.dim} dimensions expected")
        if not vectors:
            return
        with self.turn(), self.engine.begin() as conn:
            present = set(conn.execute(sa.select(ARTICLE.id).where(ARTICLE.id.in_(list(vectors)))).scalars())
            rows = [
                {"article_id": i, "vector": np.ascontiguousarray(v, dtype=np.float16).tobytes()}
                for i, v in vectors.items()
                if i in present
            ]
            db.insert_or_replace(conn, db.title_vectors, rows)
