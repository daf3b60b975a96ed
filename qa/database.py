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

# Optional: one vector per sentence of a passage, float16 [sentences, dim], L2-normalised, in sentence order.
sentence_vectors = sa.Table(
    "sentence_vectors",
    metadata,
    sa.Column(
        "key",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        sa.ForeignKey("passages.key", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    sa.Column("vectors", sa.LargeBinary, nullable=False),
)

# Optional, with the sentence vectors: the title read as a sentence, float16 [dim], L2-normalised.
title_vectors = sa.Table(
    "title_vectors",
    metadata,
    sa.Column("article_id", sa.Text, sa.ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("vector", sa.LargeBinary, nullable=False),
)


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
    dialect = {"sqlite": sqlite, "postgresql": postgresql}.get(conn.dialect.name)
    if dialect is None:
        raise NotImplementedError(f"no insert-or-replace for {conn.dialect.name} databases")
    stmt = dialect.insert(table)
    keys = [c.name for c in table.primary_key]
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys}
    )
    conn.execute(stmt, rows)
