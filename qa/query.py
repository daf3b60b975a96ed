"""A question as the read path sees it: cleaned and classified once, then passed along.

Vietnamese typed with its diacritics is read by the model and by the accented lexical fields; typed without them,
by the accent-free lexical field (the dense model is nearly blind to unaccented Vietnamese, so it counts for less),
or, once its marks are restored (`qa.restore`, `Query.restored`), by the model as understood and by the
accent-free field as typed, the dense signals then counting as for a question typed with its marks; another
language (no diacritics, mostly words no Vietnamese syllable spells) by the model alone, since it shares no words
with the passages.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from qa.text import has_tone_marks, normalize, vietnamese_share

if TYPE_CHECKING:
    from qa.restore import Restoration

__all__ = ["Query"]

# Below this share of words that could be Vietnamese syllables, a question without diacritics is another language:
# unaccented Vietnamese scores near 1.0, English near 0.2 (how the dev sets' questions fall: benchmarks/quality.md).
_VIETNAMESE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Query:
    text: str  # normalised (NFC, plain spaces), stripped; as understood when restored
    accented: bool  # carries Vietnamese diacritics (as typed, or restored)
    foreign: bool  # no diacritics, and mostly not Vietnamese words
    restoration: Restoration | None = None  # the marks restored (`qa.restore`): `text` is what it understood

    @classmethod
    def parse(cls, question: str) -> Query:
        text = normalize(question).strip()
        accented = has_tone_marks(text)
        return cls(text, accented, not accented and vietnamese_share(text) < _VIETNAMESE_SHARE)

    def restored(self, restoration: Restoration) -> Query:
        """This question as `restoration` understood it."""
        return replace(self, text=restoration.text, accented=True, restoration=restoration)

    @property
    def typed(self) -> str:
        """The question as typed (normalised)."""
        return self.text if self.restoration is None else self.restoration.typed

    @property
    def folded(self) -> bool:
        """Matched against the accent-free lexical field (it has no diacritics to tell "đường" from "dương"), as
        typed without marks, restored or not."""
        return not self.accented or self.restoration is not None
