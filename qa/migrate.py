"""`qa migrate`: copy an index's database into another database (the embedded SQLite file of an index folder into
a server such as PostgreSQL, or back), so an index moves between deployments without re-embedding anything.

The database is an index's source of truth: its vector and lexical indexes are derived from it, and `Store.open`
rebuilds them where they are missing, so copying the rows is moving the index. Passage keys are copied as they are
(they are the vector indexes' ids) and the target's key sequence ends past the largest of them, so a later write
never reuses one. The source is read in one snapshot; the target is written in one transaction, tables included,
so a failure or ^C leaves it without an index, never with part of one.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from tqdm.auto import tqdm

from qa import database as db
from qa.store import ENGINE_PREFIX, FORMAT_VERSION, NoIndexError, StoreError

# Rows read and written a round trip: a passage carries a 1.5 KB vector, its sentence vectors ~770 bytes each.
BATCH = 2_000
_DIALECTS = ("sqlite", "postgresql")  # what the store writes to (`qa.database.insert_or_replace`)


class MigrateError(StoreError):
    """The copy cannot start: a database out of reach or unknown, a target that already holds an index; nothing
    was written."""


@dataclass(frozen=True, slots=True)
class MigrateReport:
    rows: dict[str, int]  # table name → rows copied
    seconds: float

    @property
    def articles(self) -> int:
        return self.rows.get(db.articles.name, 0)

    @property
    def passages(self) -> int:
        return self.rows.get(db.passages.name, 0)


def shown(url: str) -> str:
    """`url` as it may be printed: its password hidden."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names (None: another database, SQLite in memory, or no URL at all)."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def database_at(location: str) -> str:
    """The database a `qa migrate --from` names: a SQLAlchemy URL as given, a SQLite file, or an index folder (its
    embedded SQLite file)."""
    if "://" in location:
        return location
    return f"sqlite:///{location}" if Path(location).is_file() else db.database_url(Path(location), None)


def new_index_folder(folder: Path) -> str:
    """The embedded database of a new index in `folder`, created if need be. A folder holding anything is refused:
    a vector or lexical index left there by another index could pass for this one's (they are only stamped with
    the database's generation), so the index must start with nothing but its database."""
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise MigrateError(f"cannot migrate into {folder}: it is not an empty folder (an index's folder starts empty)")
    folder.mkdir(parents=True, exist_ok=True)
    return db.database_url(folder, None)


def copy_database(source_url: str, target_url: str, *, progress: bool = False) -> MigrateReport:
    """Copy the index in the database at `source_url` into the one at `target_url`, which must hold none (a SQLite
    file is created, with its folder); see the module doc. Raises `NoIndexError` when the source holds no index,
    `MigrateError` when a database cannot be reached or the target holds an index, `StoreError` when the copy
    fails midway (the target is then left as it was)."""
    started = time.perf_counter()
    source_file, target_file = sqlite_file(source_url), sqlite_file(target_url)
    if source_file is not None and not source_file.is_file():  # connecting would create an empty one
        raise NoIndexError(f"no index at {source_file}: nothing to migrate")
    created = target_file is not None and not target_file.exists()
    if target_file is not None:
        target_file.parent.mkdir(parents=True, exist_ok=True)
    source, target = _engine(source_url, "source"), _engine(target_url, "target")
    try:
        with _connect(source, "source") as src, _connect(target, "target") as dst:
            if src.dialect.name == "postgresql":  # every table read in one snapshot, as the last commit left it
                src.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
            with dst.begin():
                tables = _source_tables(src, shown(source_url))
                _check_empty(dst, shown(target_url))
                rows = _copy(src, dst, tables, shown(target_url), progress)
    except BaseException:
        target.dispose()
        if created and target_file is not None:  # a file this call created holds nothing: leave none behind
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{target_file}{suffix}").unlink(missing_ok=True)
        raise
    finally:
        source.dispose()
        target.dispose()
    return MigrateReport(rows, time.perf_counter() - started)


def _reason(exc: BaseException) -> str:
    """The database's own words, in one line (SQLAlchemy's message adds the statement and a link)."""
    return " ".join(str(exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc).split())


def _engine(url: str, role: str) -> Engine:
    try:
        engine = db.create_engine(url)
    except (sa.exc.ArgumentError, ImportError) as exc:  # a malformed URL, an unknown dialect, a driver not installed
        raise MigrateError(f"the {role} {shown(url)!r} is not a database URL this install can use ({exc})") from exc
    if engine.dialect.name not in _DIALECTS:
        engine.dispose()
        raise MigrateError(
            f"the {role} {shown(url)!r} is a {engine.dialect.name} database: an index lives in {' or '.join(_DIALECTS)}"
        )
    return engine


@contextmanager
def _connect(engine: Engine, role: str) -> Iterator[Connection]:
    try:
        conn = engine.connect()
    except sa.exc.DBAPIError as exc:
        raise MigrateError(f"cannot reach the {role} database {engine.url!r} ({_reason(exc)})") from exc
    with conn:
        yield conn


def _source_tables(src: Connection, where: str) -> list[sa.Table]:
    """The tables to copy, parents first; the source must hold an index of this version's format (a table a later
    version of the format added may be missing: `Store.open` creates it)."""
    inspector = sa.inspect(src)
    if not inspector.has_table(db.meta.name):
        raise NoIndexError(f"no index in the source database {where}: nothing to migrate")
    value = src.scalar(sa.select(db.meta.c.value).where(db.meta.c.key == "format_version"))
    version = json.loads(value) if value is not None else None
    if version != FORMAT_VERSION:
        raise MigrateError(f"the index in {where} has format {version}, this version copies {FORMAT_VERSION}")
    return [t for t in db.metadata.sorted_tables if inspector.has_table(t.name)]


def _check_empty(dst: Connection, where: str) -> None:
    inspector = sa.inspect(dst)
    if inspector.has_table(db.meta.name):
        raise MigrateError(f"the target database {where} already holds an index: migrate into an empty one")
    clashing = [name for name in db.metadata.tables if inspector.has_table(name)]
    if clashing:
        tables = ", ".join(clashing)
        raise MigrateError(f"the target database {where} already has tables named {tables}: migrate into an empty one")


def _copy(src: Connection, dst: Connection, tables: Sequence[sa.Table], where: str, progress: bool) -> dict[str, int]:
    """Every row of `tables` from `src` into new tables at `dst`, in `dst`'s transaction; rows copied per table."""
    try:
        db.metadata.create_all(dst)
        total = sum(src.scalar(sa.select(sa.func.count()).select_from(t)) or 0 for t in tables)
        rows: dict[str, int] = {}
        with tqdm(total=total, desc="migrating", unit="row", disable=not progress) as bar:
            for table in tables:
                bar.set_postfix_str(table.name)
                query = sa.select(table).order_by(*table.primary_key.columns).execution_options(yield_per=BATCH)
                rows[table.name] = 0
                for part in src.execute(query).mappings().partitions():
                    _insert(dst, table, [dict(row) for row in part])
                    rows[table.name] += len(part)
                    bar.update(len(part))
        _continue_keys(dst)
        # A copy is another deployment's index: shared search engines must not take it for its source. Its
        # collections there are new, so nothing of the source's is pending or complete in them.
        db.insert_or_replace(dst, db.meta, [{"key": "index_id", "value": json.dumps(uuid.uuid4().hex)}])
        dst.execute(sa.delete(db.meta).where(db.meta.c.key.startswith(ENGINE_PREFIX)))
        dst.execute(sa.delete(db.pending_deletes))
    except sa.exc.DBAPIError as exc:
        raise StoreError(f"migrating into {where} failed, nothing was written there ({_reason(exc)})") from exc
    return rows


def _insert(dst: Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """One batch of rows, as read (passage keys included)."""
    dst.execute(sa.insert(table), rows)


def _continue_keys(dst: Connection) -> None:
    """Leave the passage key sequence past the largest copied key. SQLite's AUTOINCREMENT does so by itself (an
    insert with an explicit key raises `sqlite_sequence`); PostgreSQL's sequence is not moved by such inserts."""
    if dst.dialect.name == "postgresql":
        dst.execute(
            sa.text(
                "SELECT setval(pg_get_serial_sequence('passages', 'key'), coalesce(max(key), 1), max(key) IS NOT NULL)"
                " FROM passages"
            )
        )
