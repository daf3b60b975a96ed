"""The lifecycle every derived index shares (the vector index, the lexical index): built from the database's
passages and changed by every write.

The database is the commit point. A *local* index (FAISS, tantivy: files in the index folder) is applied after the
commit and saved stamped with the generation it reflects; at open, one whose stamp is not the database's generation
(a crash came between the two, or it is missing or damaged) is rebuilt from the database. A *shared* index (Milvus:
one collection every replica reads) gets a write's passages before its commit and loses the old ones after it
(`qa.database.pending_deletes`, replayed after a crash); it is filled from the database when missing
(`qa.storage.indexes`).

A write reaches a local index in two steps: `apply(..., publish=False)` does the slow part (tantivy's commit) where
searches still see the state before it, and `publish()` the brief in-memory part (FAISS's adds and removes, tantivy's
reload) that makes it visible; `qa.storage.indexes` publishes every index of a write together.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from qa.lexical import TermStats
    from qa.schemas import Filters
    from qa.vectors import VectorConfig

__all__ = ["DerivedIndex", "Engine", "PassageRow", "Scope", "Site", "engine_class"]


@dataclass(frozen=True, slots=True)
class PassageRow:
    """One passage as the derived indexes read it."""

    key: int  # the database's passage key, never reused
    text: str  # what the lexical index reads: `qa.domain.encoder_input(title, passage text)`
    vector: np.ndarray  # float32, L2-normalised
    # What a search engine filters on by itself (Milvus): the article's id, source and date (ISO 8601, naive
    # Vietnam local time, as the database stores it).
    article_id: str = ""
    source: str | None = None
    published_at: str | None = None


@dataclass(frozen=True, slots=True)
class Site:
    """Where one index's derived indexes live and what they are built for: what an engine's `at` reads."""

    directory: Path  # the index folder: a local engine's files, or where a shared one records where it lives
    dim: int  # the vectors' dimension
    index_id: str  # the index's own id: names its collections in a shared search engine
    vectors: VectorConfig  # the vector backend's options (a Milvus URI and collection prefix serve both engines)
    # For a lexical engine whose per-term counts a client cannot read: the database's (`qa.storage.terms`).
    term_stats: TermStats | None = None


@dataclass(slots=True)
class Scope:
    """Which passages a search may return: `filters` (None: all). An engine that filters by itself reads `filters`;
    one that needs the passage keys calls `keys()`, looked up in the database once per question batch.

    A question batch's searches share one scope, and with it one generation of the local derived indexes: `view`
    is the published state its first search read (`qa.storage.indexes`), and its later searches read that one too.
    """

    filters: Filters | None
    lookup: Callable[[Filters], np.ndarray]
    _keys: np.ndarray | None = None
    view: Any = None

    def keys(self) -> np.ndarray | None:
        """The allowed passage keys (None: every passage)."""
        if self.filters is None:
            return None
        if self._keys is None:
            self._keys = self.lookup(self.filters)
        return self._keys


class DerivedIndex(Protocol):
    # False: kept beside this process's database and stamped with its generation (FAISS, tantivy). True: kept in a
    # search engine every replica shares (Milvus): a write adds its passages there before its commit and removes the
    # old ones after it (`qa.database.pending_deletes`), and the stamp is unused.
    shared: bool

    def saved_generation(self) -> int | None:
        """The database generation this index was last saved at (None: never saved, or unreadable)."""
        ...

    def apply(self, removed: Sequence[int], added: Sequence[PassageRow], *, publish: bool = True) -> None:
        """Remove passages by key, then add passages (a key is never added twice); searches see it at once, or with
        `publish=False` from the next `publish()` on."""
        ...

    def publish(self) -> None:
        """Make what was applied with `publish=False` visible to searches (brief: in memory only)."""
        ...

    def fits(self, size: int) -> bool:
        """Whether this index still suits a corpus of `size` passages (else it is rebuilt from the database)."""
        ...

    def save(self, generation: int) -> None:
        """Persist what was applied, stamped with `generation`; a crash leaves the old stamp or the new one."""
        ...

    def close(self) -> None: ...


class Engine(Protocol):
    """A backend class as a registry names it (`qa.vectors.BACKENDS`, `qa.lexical.BACKENDS`)."""

    shared: bool

    def at(self, site: Site, *, fresh: bool, size: int) -> DerivedIndex | None:
        """`fresh`: a new, empty index (a shared one: its collection dropped and made anew). Else the saved one: a
        local one as it was saved (None when missing, unreadable or not fitting a corpus of `size` passages), a
        shared one as the engine holds it (`created` when it had to make it)."""
        ...


def engine_class(backends: Mapping[str, str], name: str) -> Any:
    """The class a registry (backend name → "module:Class") names for `name`, imported now; None if unknown."""
    target = backends.get(name)
    if target is None:
        return None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
