"""The relational schema of an index (SQLAlchemy Core tables) and the engine that reaches it: the SQLite file in
the index folder by default, or a database server such as PostgreSQL named by a SQLAlchemy URL."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

DB_FILE = "store.sqlite"

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, nullable=False),  # JSON
)

articles = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("published_at", sa.Text),  # ISO 8601, naive Vietnam local time: compares as text
    sa.Column("source", sa.Text),
    sa.Column("author", sa.Text),
    sa.Column("url", sa.Text),
    sa.Column("fingerprint", sa.Text, nullable=False),
    sa.Column("origin", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

passages = sa.Table(
    "passages",
    metadata,
    # The vector indexes' id, never reused: SQLite's AUTOINCREMENT (which needs the INTEGER rowid alias), a
    # BIGSERIAL elsewhere.
    sa.Column("key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
    sa.Column("id", sa.Text, nullable=False, unique=True),  # the stable public id, "<article id>:<ordinal>"
    sa.Column("article_id", sa.Text, sa.ForeignKey("articles.id", ondelete="CASCADE"), nullable=False),
    sa.Column("ordinal", sa.Integer, nullable=False),
    sa.Column("start", sa.Integer, nullable=False),
    sa.Column("end", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("sentences", sa.Text, nullable=False),  # JSON [[start, end], ...] relative to text
    sa.Column("vector", sa.LargeBinary, nullable=False),  # float32, L2-normalised
    sqlite_autoincrement=True,
)
sa.Index("passages_article", passages.c.article_id, passages.c.ordinal)


def _passage_key() -> sa.Column[int]:
    """The primary key of a table of one row per passage, deleted with it."""
    return sa.Column(
        "key",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("passages.key", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    )


# Optional: one vector per sentence of a passage, float16 [sentences, dim], L2-normalised, in sentence order.
sentence_vectors = sa.Table(
    "sentence_vectors",
    metadata,
    _passage_key(),
    sa.Column("vectors", sa.LargeBinary, nullable=False),
)

# What answer selection reads of each sentence of a passage, then of its article's title (`qa.reading.dumps`): read
# once when the passage is stored, not at every question. A passage stored before this table has none (read then).
passage_readings = sa.Table(
    "passage_readings",
    metadata,
    _passage_key(),
    sa.Column("readings", sa.Text, nullable=False),
)

# Optional, with the sentence vectors: the title read as a sentence, float16 [dim], L2-normalised.
title_vectors = sa.Table(
    "title_vectors",
    metadata,
    sa.Column("article_id", sa.Text, sa.ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("vector", sa.LargeBinary, nullable=False),
)


# With a lexical engine that keeps no term statistics of its own reachable per term (Milvus): how many passages hold
# each word, in the write's own transaction, for the answer's idf weights (`Store.idf`) and tone-mark restoration
# (`qa.restore`): accented syllables ("syllables") and their adjacent pairs ("phrases"), accent-free syllables
# ("folded"; not their pairs).
term_stats = sa.Table(
    "term_stats",
    metadata,
    sa.Column("field", sa.Text, primary_key=True),
    sa.Column("term", sa.Text, primary_key=True),
    sa.Column("docs", sa.BigInteger, nullable=False),
)

# Passage keys removed from the database whose rows a shared search engine (Milvus) may still hold: recorded in the
# write's transaction, deleted from the engines after the commit, then from here; replayed at open and before each
# write, so a crash between the two never leaves them there for good (a hit is always read back from the database,
# so until then they are only skipped).
pending_deletes = sa.Table(
    "pending_deletes",
    metadata,
    sa.Column("key", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=False),
)


# Long writes (`qa.jobs`), in metadata of their own, created by `qa.jobs.JobQueue`: in the database server beside the
# index, or in a SQLite file of their own beside the index folder (`<folder>.jobs.sqlite`), where a job's bookkeeping
# never holds the store's single writer lock, nor commits between a store transaction's read and its write. Not part
# of an index (`qa migrate` does not copy them). One row per job, and one per article it was sent with, in the posted
# order. A job and its articles are created in one transaction; the runner holding the job's lease (`owner`,
# `lease_until`) marks articles done after the store committed them, so after a crash at most the last batch is
# written again (a write replaces whole articles).
JOBS_DB_FILE = "jobs.sqlite"
job_metadata = sa.MetaData()

jobs = sa.Table(
    "jobs",
    job_metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("state", sa.Text, nullable=False),  # queued, running, done, failed, cancelled
    sa.Column("created_at", sa.Float, nullable=False),  # Unix time
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("articles_total", sa.Integer, nullable=False),
    sa.Column("passages_total", sa.Integer, nullable=False),
    sa.Column("owner", sa.Text),  # the replica running it
    sa.Column("lease_until", sa.Float),  # past this, another replica may take the job over
    sa.Column("attempts", sa.Integer, nullable=False, default=0),  # claims so far: a job that keeps crashing fails
    sa.Column("cancel_requested", sa.Boolean, nullable=False, default=False),
    sa.Column("error", sa.Text),
)
sa.Index("jobs_state", jobs.c.state, jobs.c.created_at)

job_articles = sa.Table(
    "job_articles",
    job_metadata,
    sa.Column("job_id", sa.Text, sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("article_id", sa.Text, nullable=False),
    sa.Column("record", sa.Text, nullable=False),  # the article as posted, JSON
    sa.Column("status", sa.Text, nullable=False),  # pending, done, failed
    sa.Column("passages", sa.Integer, nullable=False),  # as chunked when the job was made
    sa.Column("error", sa.Text),
)


def lock_articles(conn: Connection, article_ids: Iterable[str]) -> None:
    """On PostgreSQL, hold a lock per article id until the transaction ends (in id order, so two writers never wait
    on each other in a cycle): writers of the same article take turns, and each reads its old passages after the
    other's commit. SQLite has one writer at a time anyway."""
    if conn.dialect.name != "postgresql":
        return
    for article_id in sorted(set(article_ids)):
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(article_id, 0))))


def lock_name(conn: Connection, name: str) -> None:
    """On PostgreSQL, a lock on `name` held until the transaction ends (e.g. one replica building a search engine's
    collection while the others wait); nothing on SQLite."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtextextended(name, 1))))


def database_url(folder: Path, url: str | None) -> str:
    """`url`, or the embedded default: the SQLite file in the index `folder`."""
    return url or f"sqlite:///{Path(folder) / DB_FILE}"


def is_embedded(url: str | None) -> bool:
    """Whether `url` names a SQLite file (the database lives and travels with the index folder)."""
    return url is None or sa.engine.make_url(url).get_backend_name() == "sqlite"


def create_engine(url: str) -> Engine:
    """An engine for `url`; on SQLite each connection is durable (WAL, synchronous=FULL), enforces foreign keys,
    and its transactions are real ones (a BEGIN of our own, not the driver's implicit one before the first write)."""
    if sa.engine.make_url(url).get_backend_name() != "sqlite":
        return sa.create_engine(url, pool_pre_ping=True)
    engine = sa.create_engine(url)

    @sa.event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # the driver opens no transaction by itself: `_begin` does
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Reads through a memory map of the file (the OS page cache; SQLite caps it at 2 GiB) instead of a read()
        # per page into a 2 MB private cache: much faster for the scattered reads of the candidates' sentence
        # vectors (benchmarks/README.md, "Latency"). Writes still go through the WAL.
        cursor.execute("PRAGMA mmap_size=2147418112")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        # Straight to the driver: this runs before every statement outside a transaction (reads included), where a
        # statement through SQLAlchemy would cost as much again as the query it precedes.
        connection.connection.driver_connection.execute("BEGIN")  # type: ignore[union-attr]

    return engine


def insert_or_replace(conn: Connection, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert `rows`, replacing the row of the same primary key where there is one."""
    rows = list(rows)
    if not rows:
        return
    stmt = _dialect(conn).insert(table)
    keys = [c.name for c in table.primary_key]
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )
    conn.execute(stmt, rows)


def insert_if_absent(conn: Connection, table: sa.Table, rows: Iterable[Mapping[str, Any]]) -> None:
    """Insert `rows`, leaving a row of the same primary key as it is (two writers at once: the first one's stays)."""
    rows = list(rows)
    if rows:
        conn.execute(_dialect(conn).insert(table).on_conflict_do_nothing(), rows)


def add_counts(conn: Connection, table: sa.Table, rows: Iterable[Mapping[str, Any]], column: str) -> None:
    """Add each row's `column` to the stored row of the same primary key (inserting it where there is none). Give
    the rows in key order: two writers then lock shared rows in the same order and never deadlock."""
    rows = list(rows)
    if not rows:
        return
    stmt = _dialect(conn).insert(table)
    keys = [c.name for c in table.primary_key]
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_={column: table.c[column] + stmt.excluded[column]})
    conn.execute(stmt, rows)


def _dialect(conn: Connection) -> Any:
    dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(conn.dialect.name)
    if dialect is None:
        raise NotImplementedError(f"no upserts for {conn.dialect.name} databases")
    return dialect
