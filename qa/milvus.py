"""What the indexes kept in Milvus share (`qa.vectors.milvus`, `qa.lexical.milvus`): one client per URI, the
collections of an index, the article fields each row carries, and filters as Milvus's own expressions.

Milvus is a search engine every replica shares (`DerivedIndex.shared`): a write upserts its passages there before its
database commit and deletes the old ones after it, reads are strongly consistent, and each index's collections are
named after the index's id (`<prefix>_<id>`), so an index migrated or rebuilt elsewhere never reads another's rows.
A row carries its article's id, source and date, so that `Filters` become a filter expression of the search itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from qa.dates import VIETNAM_TZ
from qa.derived import PassageRow

if TYPE_CHECKING:
    from pymilvus import MilvusClient

    from qa.derived import Site
    from qa.schemas import Filters

log = logging.getLogger(__name__)
T = TypeVar("T")

LITE_FILE = "milvus.db"  # the milvus-lite file in the index folder when QA_MILVUS_URI is unset
BM25_SUFFIX = "_bm25"  # the lexical collection's name: the dense one's and this
NO_DATE = -1  # `published` of an article without a date: fails every date bound
MAX_SOURCE = 1024  # characters of a source kept for filtering (VARCHAR needs a bound; sources are names)
MAX_ID = 512


class MilvusError(RuntimeError):
    """Milvus is not installed, not reachable, or refused a request; the message says which."""


_clients: dict[str, tuple[MilvusClient, int, threading.Lock | None]] = {}
_clients_lock = threading.Lock()


def resolve_uri(uri: str | None, directory: Path | None) -> str:
    """`QA_MILVUS_URI`, else a milvus-lite file inside the index folder."""
    if uri:
        return uri
    if directory is None:
        raise MilvusError("set QA_MILVUS_URI (a Milvus server URI or a local .db file for milvus-lite)")
    return str(Path(directory) / LITE_FILE)


def is_local(uri: str) -> bool:
    """Whether `uri` is a milvus-lite file (embedded in this process) rather than a server."""
    return not uri.startswith(("http://", "https://", "tcp://", "unix:"))


def acquire(uri: str) -> tuple[MilvusClient, threading.Lock | None]:
    """The process's client for `uri` (one per URI: milvus-lite opens its file once), and a lock to hold around
    each call for a milvus-lite file (None for a server: its gRPC client serves many threads at once). Give it back
    with `release`."""
    with _clients_lock:
        if uri in _clients:
            client, users, lock = _clients[uri]
            _clients[uri] = (client, users + 1, lock)
            return client, lock
        try:
            from pymilvus import MilvusClient
        except ImportError as exc:
            raise MilvusError(
                "the Milvus backends need pymilvus (and milvus-lite for a local .db): pip install pymilvus milvus-lite"
            ) from exc
        try:
            client = MilvusClient(uri)
        except Exception as exc:  # pymilvus raises its own and grpc's errors
            raise MilvusError(f"cannot reach Milvus at {uri}: {reason(exc)}") from exc
        lock = threading.Lock() if is_local(uri) else None
        _clients[uri] = (client, 1, lock)
        return client, lock


def release(uri: str) -> None:
    with _clients_lock:
        if uri not in _clients:
            return
        client, users, lock = _clients[uri]
        if users > 1:
            _clients[uri] = (client, users - 1, lock)
            return
        del _clients[uri]
    client.close()


@contextmanager
def calling(lock: threading.Lock | None, uri: str, what: str) -> Iterator[None]:
    """Around one Milvus call: its lock, and its failure as a `MilvusError` naming what was asked."""
    try:
        if lock is None:
            yield
        else:
            with lock:
                yield
    except MilvusError:
        raise
    except Exception as exc:
        if type(exc).__module__.startswith(("pymilvus", "grpc")):
            raise MilvusError(f"Milvus at {uri} failed to {what}: {reason(exc)}") from exc
        raise


class _Owner(Protocol):
    uri: str
    collection: str
    _client: MilvusClient
    _lock: threading.Lock | None


def call(owner: _Owner, what: str, request: Callable[[], T]) -> T:
    """`request` on `owner`'s collection (see `calling`). A collection that is not loaded (Milvus restarted: it
    comes back with its collections released) is loaded and the request sent once more."""
    try:
        with calling(owner._lock, owner.uri, what):
            return request()
    except MilvusError as exc:
        if not _not_loaded(exc.__cause__):
            raise
    log.warning("Milvus collection %s was not loaded (a restart?): loading it", owner.collection)
    with calling(owner._lock, owner.uri, what):
        owner._client.load_collection(owner.collection)
        return request()


def _not_loaded(exc: BaseException | None) -> bool:
    code = getattr(exc, "code", None)
    return code == 101 or "not loaded" in str(exc).lower() or "call load()" in str(exc)


def reason(exc: BaseException) -> str:
    message = getattr(exc, "message", None) or getattr(exc, "details", lambda: None)() or str(exc)
    return " ".join(str(message).split())[:300]


class Collection:
    """What both Milvus-backed indexes share: their collection and its client, and the derived-index lifecycle of an
    index kept in step by the writes (never stamped; `save` seals what a fill wrote into segments)."""

    shared = True

    def __init__(self, uri: str, collection: str, *, directory: Path) -> None:
        self.directory = Path(directory)
        self.uri = uri
        self.collection = collection
        self.created = False  # whether `open` had to create the collection
        self._client, self._lock = acquire(uri)

    def open(self, fresh: bool, define: Callable[[MilvusClient], tuple[Any, Any]]) -> None:
        """Load the collection, created first from `define(client)` (schema, index params) if missing; `fresh`:
        dropped first if present (the caller fills it)."""
        client = self._client
        with calling(self._lock, self.uri, f"open collection {self.collection}"):
            if fresh and client.has_collection(self.collection):
                client.drop_collection(self.collection)
            self.created = not client.has_collection(self.collection)
            if self.created:
                schema, index_params = define(client)
                client.create_collection(
                    self.collection, schema=schema, index_params=index_params, consistency_level="Strong"
                )
                log.info("Milvus collection %s created at %s", self.collection, self.uri)
            client.load_collection(self.collection)

    @staticmethod
    def uri_at(site: Site) -> str:
        """The Milvus of an index: `QA_MILVUS_URI`, else a milvus-lite file in its folder."""
        return resolve_uri(site.vectors.milvus_uri, site.directory)

    @staticmethod
    def collection_at(site: Site) -> str:
        """The name of the index's collection in the engine."""
        raise NotImplementedError

    @classmethod
    def in_process(cls, site: Site) -> bool:
        """Whether the collection would live in this process (a milvus-lite file) rather than in a shared server."""
        return is_local(cls.uri_at(site))

    def saved_generation(self) -> int | None:
        return None

    def publish(self) -> None:
        pass  # a write is visible to every replica once Milvus has answered

    def fits(self, size: int) -> bool:
        return True

    def save(self, generation: int) -> None:
        with calling(self._lock, self.uri, "flush"):
            self._client.flush(self.collection)

    def close(self) -> None:
        release(self.uri)


def collection_name(prefix: str, index_id: str, suffix: str = "") -> str:
    return f"{prefix}_{index_id[:16]}{suffix}"


def add_article_fields(schema: Any) -> None:
    """The fields a row carries for filtering (see `row_fields`)."""
    from pymilvus import DataType

    schema.add_field("article_id", DataType.VARCHAR, max_length=MAX_ID)
    schema.add_field("source", DataType.VARCHAR, max_length=MAX_SOURCE)
    schema.add_field("published", DataType.INT64)


def row_fields(row: PassageRow) -> dict[str, Any]:
    return {
        "key": int(row.key),
        "article_id": row.article_id[:MAX_ID],
        "source": (row.source or "")[:MAX_SOURCE],
        "published": NO_DATE if row.published_at is None else _number(datetime.fromisoformat(row.published_at)),
    }


def _number(moment: datetime) -> int:
    """A date as the sortable integer YYYYMMDDhhmmss of naive Vietnam local time (the database's clock)."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(VIETNAM_TZ).replace(tzinfo=None)
    return int(moment.strftime("%Y%m%d%H%M%S"))


def _string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def filter_expression(filters: Filters | None, keys: Sequence[int] | None = None) -> str:
    """`filters` (and, when given, only `keys`) as a Milvus boolean expression; "" keeps every row."""
    clauses: list[str] = []
    if filters is not None:
        if filters.published_from is not None:
            clauses.append(f"published >= {_number(filters.published_from)}")
        if filters.published_to is not None:
            clauses.append(f"published <= {_number(filters.published_to)}")
        if filters.published_from is not None or filters.published_to is not None:
            clauses.append(f"published != {NO_DATE}")
        if filters.sources is not None:
            clauses.append(f"source in [{', '.join(_string(s[:MAX_SOURCE]) for s in filters.sources)}]")
        if filters.article_ids is not None:
            clauses.append(f"article_id in [{', '.join(_string(a[:MAX_ID]) for a in filters.article_ids)}]")
    if keys is not None:
        clauses.append(f"key in [{','.join(str(int(k)) for k in keys)}]")
    return " and ".join(f"({c})" for c in clauses)
