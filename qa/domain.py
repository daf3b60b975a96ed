"""The domain types both paths share: an `Article`, its `Passage`s, and the text the encoder reads for them.

Below the write path (parsing, chunking, indexing) and the read path (store, retriever) alike, so neither imports
the other just for these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

__all__ = ["Article", "Passage", "Span", "encoder_input", "sentence_inputs"]

Span = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Article:
    id: str
    title: str
    body: str  # normalised text, paragraphs separated by "\n\n"
    published_at: datetime | None  # naive Vietnam local time, minute precision
    source: str | None
    author: str | None
    url: str | None = None
    fingerprint: str = ""  # sha256 hex of the raw input; changes when the seed changes

    def differs_from(self, stored: Mapping[str, str]) -> bool:
        """Whether this article is new or changed against `stored` fingerprints by id (`Store.fingerprints`)."""
        return stored.get(self.id) != self.fingerprint


@dataclass(frozen=True, slots=True)
class Passage:
    id: str  # f"{article_id}:{ordinal}": stable while the article body is unchanged
    article_id: str
    ordinal: int  # 0-based
    text: str  # == article.body[start:end]
    start: int
    end: int
    sentences: tuple[Span, ...]  # sentence spans relative to `text`


def encoder_input(title: str, text: str) -> str:
    """What the encoder (and the lexical index) reads for a passage or a sentence: the article title first, which
    gives a short text its context."""
    return f"{title}\n{text}" if title else text


def sentence_inputs(title: str, passage: Passage) -> list[str]:
    """`encoder_input` of each sentence of `passage`, in sentence order."""
    return [encoder_input(title, passage.text[a:b]) for a, b in passage.sentences]
