"""The lifecycle every derived index shares (the vector index, the lexical index): built from the database's
passages, changed by every write, saved beside the database stamped with the generation it reflects.

The database is the commit point. A write commits there first, then is applied to each derived index, then each is
saved with the new generation. At open, a derived index whose stamp is not the database's generation (a crash came
between the two, or it is missing or damaged) is rebuilt from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["DerivedIndex", "PassageRow"]


@dataclass(frozen=True, slots=True)
class PassageRow:
    """One passage as the derived indexes read it."""

    key: int  # the database's passage key, never reused
    text: str  # what the lexical index reads: `qa.domain.encoder_input(title, passage text)`
    vector: np.ndarray  # float32, L2-normalised


class DerivedIndex(Protocol):
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
