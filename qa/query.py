"""A question as the read path sees it: cleaned and classified once, then passed along.

Vietnamese typed with its diacritics is read by the model and by the accented lexical fields; typed without them,
by the accent-free lexical field (the dense model is nearly blind to unaccented Vietnamese, so it counts for less);
another language (no diacritics, mostly words no Vietnamese syllable spells) by the model alone, since it shares no
words with the passages.
"""

from __future__ import annotations

from dataclasses import dataclass

from qa.text import has_tone_marks, normalize, vietnamese_share

__all__ = ["Query"]

# Below this share of words that could be Vietnamese syllables, a question without diacritics is another language:
# unaccented Vietnamese scores near 1.0, English near 0.2 (how the dev sets' questions fall: benchmarks/quality.md).
_VIETNAMESE_SHARE = 0.5


@dataclass(frozen=True, slots=True)
class Query:
    text: str  # normalised (NFC, plain spaces), stripped
    accented: bool  # carries Vietnamese diacritics
    foreign: bool  # no diacritics, and mostly not Vietnamese words

    @classmethod
    def parse(cls, question: str) -> Query:
        text = normalize(question).strip()
        accented = has_tone_marks(text)
        return cls(text, accented, not accented and vietnamese_share(text) < _VIETNAMESE_SHARE)

    @property
    def folded(self) -> bool:
        """Matched against the accent-free lexical field (it has no diacritics to tell "đường" from "dương")."""
        return not self.accented
