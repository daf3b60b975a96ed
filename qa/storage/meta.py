"""An index's schema and meta rows: create and open them (format, errors), the generation and the article and passage
counts a write moves in its own transaction, and the manifest read from them (`manifest.json` for people)."""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from qa import database as db
from qa.files import atomic_write_bytes

if TYPE_CHECKING:
    from qa.storage.writes import Change
    from qa.vectors import VectorIndex

FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
# Meta keys of the search engines' collections that were filled completely (a build that crashed half-way is redone).
ENGINE_PREFIX = "engine:"


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


def unreadable(where: object, exc: BaseException, engine: Engine) -> StoreError:
    """The error for an index that cannot be read, in one line: the database's own words (SQLAlchemy's message adds
    the statement and a link). A database server that does not answer is not a corrupt index."""
    reason = str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).strip().replace("\n", " ")
    if isinstance(exc, sa.exc.OperationalError) and engine.dialect.name != "sqlite":
        return StoreError(f"index at {where}: cannot reach its database ({reason})")
    return StoreError(f"index at {where} is corrupt ({reason}): rebuild it with `qa index --rebuild`")


def create_schema(engine: Engine, *, model: str, dim: int, chunking: dict[str, int]) -> None:
    """The tables and meta rows of a new, empty index; IndexExistsError if the database holds one."""
    now = datetime.now().isoformat(timespec="seconds")
    meta = {
        "format_version": FORMAT_VERSION,
        "model": model,
        "dim": dim,
        "generation": 0,
        "articles": 0,
        "passages": 0,
        "index_kind": "flat",
        "chunking": chunking,
        "seeds_fingerprint": "",
        "created_at": now,
        "updated_at": now,
        "index_id": uuid.uuid4().hex,
    }
    with engine.begin() as conn:
        db.lock_name(conn, "create index")  # two replicas starting on an empty database: one creates it
        if sa.inspect(conn).has_table(db.meta.name):
            raise IndexExistsError(f"cannot create an index in {engine.url!r}: the database already holds one")
        db.metadata.create_all(conn)
        conn.execute(sa.insert(db.meta), [{"key": k, "value": json.dumps(v)} for k, v in meta.items()])


def open_schema(engine: Engine, where: object) -> None:
    """Check the index in `engine` is of this format and readable, adding what a later version of the format added
    (tables, the index id, the counts); NoIndexError or StoreError if it cannot be used."""
    try:
        with engine.begin() as conn:
            if not sa.inspect(conn).has_table(db.meta.name):
                raise NoIndexError(f"no index at {where} (its database holds none): build one with `qa index`")
            value: Any = conn.scalar(sa.select(db.meta.c.value).where(db.meta.c.key == "format_version"))
            version = int(json.loads(value))
            if version == FORMAT_VERSION:
                db.metadata.create_all(conn)
                db.insert_if_absent(conn, db.meta, [{"key": "index_id", "value": json.dumps(uuid.uuid4().hex)}])
                _count_once(conn)
    except (sa.exc.DBAPIError, TypeError, ValueError) as exc:
        raise unreadable(where, exc, engine) from exc
    if version != FORMAT_VERSION:
        raise StoreError(
            f"index at {where} has format {version}, this version reads {FORMAT_VERSION}: "
            "rebuild it with `qa index --rebuild`"
        )


def _count_once(conn: sa.Connection) -> None:
    """Count the articles and passages: reading both tables finds damage the header check misses, and an index made
    before the meta rows kept the counts gets them here (from then on every write moves them)."""
    counts = {
        key: conn.scalar(sa.select(sa.func.count()).select_from(table)) or 0
        for key, table in (("articles", db.articles), ("passages", db.passages))
    }
    db.insert_if_absent(conn, db.meta, [{"key": key, "value": json.dumps(n)} for key, n in counts.items()])


class Meta:
    """The meta rows of one index, and the manifest written from them."""

    reads_removed_text = False

    def __init__(self, engine: Engine, path: Path) -> None:
        self.engine = engine
        self.path = path

    def values(self) -> dict[str, Any]:
        with self.engine.connect() as conn:
            return {key: json.loads(value) for key, value in conn.execute(sa.select(db.meta.c.key, db.meta.c.value))}

    def manifest(self, vectors: VectorIndex | None = None) -> Manifest:
        """The manifest, from the meta rows alone (one query); with `vectors`, its kind as it is now (the stored value
        is only the kind at creation)."""
        meta = self.values()
        if vectors is not None:
            meta["index_kind"] = vectors.kind
            meta["vector_index"] = vectors.describe()
        meta = {k: v for k, v in meta.items() if not k.startswith(ENGINE_PREFIX)}
        known = set(Manifest.__dataclass_fields__) - {"extra"}
        return Manifest(**{k: meta[k] for k in known}, extra={k: v for k, v in meta.items() if k not in known})

    def set(self, values: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            db.insert_or_replace(conn, db.meta, [{"key": k, "value": json.dumps(v)} for k, v in values.items()])

    def write_manifest(self, vectors: VectorIndex | None) -> None:
        data = asdict(self.manifest(vectors))
        atomic_write_bytes(self.path / MANIFEST_FILE, json.dumps(data, ensure_ascii=False, indent=2).encode())

    # --- a participant of every write (`qa.storage.writes`) ------------------------------------------------------
    def before_commit(self, conn: sa.Connection, change: Change) -> None:
        """The next generation and the new counts, in the write's own transaction."""
        deltas = {"generation": 1, "articles": change.articles, "passages": len(change.added) - len(change.removed)}
        value = db.meta.c.value
        for key, delta in deltas.items():
            if key == "generation" or delta:
                moved = sa.cast(sa.cast(value, sa.BigInteger) + delta, sa.Text)
                conn.execute(sa.update(db.meta).where(db.meta.c.key == key).values(value=moved))
        now = datetime.now().isoformat(timespec="seconds")
        db.insert_or_replace(conn, db.meta, [{"key": "updated_at", "value": json.dumps(now)}])

    def after_commit(self, change: Change) -> None:
        pass
