"""The lifecycle every derived index shares (the vector index, the lexical index): built from the database's
passages and changed by every write.

The database is the commit point. A *local* index (FAISS, tantivy: files in the index folder) is applied after the
commit and saved stamped with the generation it reflects; at open, one whose stamp is not the database's generation
(a crash came between the two, or it is missing or damaged) is rebuilt from the database. A *shared* index (Milvus:
one collection every replica reads) gets a write's passages before its commit and loses the old ones after it
(`qa.database.pending_deletes`, replayed after a crash); it is filled from the database when missing (`Store`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from qa.schemas import Filters

__all__ = ["DerivedIndex", "PassageRow", "Scope"]


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


@dataclass(slots=True)
class Scope:
    """Which passages a search may return: `filters` (None: all). An engine that filters by itself reads `filters`;
    one that needs the passage keys calls `keys()`, looked up in the database once per question batch."""

    filters: Filters | None
    lookup: Callable[[Filters], np.ndarray]
    _keys: np.ndarray | None = None

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

    def apply(self, removed: Sequence[int], added: Sequence[PassageRow]) -> None:
        """Remove passages by key, then add passages (a key is never added twice)."""
        ...

    def save(self, generation: int) -> None:
        """Persist what was applied, stamped with `generation`; a crash leaves the old stamp or the new one."""
        ...

    def close(self) -> None: ...
