"""The project's own Vietnamese analysis: the terms the lexical engine indexes for a passage and asks for a question.

Three fields per passage: the accented syllables of `qa.text.tokenize`; their adjacent-syllable bigrams
("phrases": Vietnamese words are mostly two syllables, so a bigram stands for a word); and the syllables with
every diacritic removed plus their bigrams ("folded"). A question typed with tone marks is scored as
BM25(syllables) + `PHRASE_WEIGHT` * BM25(phrases), a BM25F-style sum in which the word-level field refines the
syllable ranking without swamping it (mixing the bigrams into the syllable bag instead ranked worse). A question
without tone marks is scored against the folded field only, so "duong" meets both "đường" and "dương" while
"đường" typed with its marks stays apart from "dương"; there the bigrams share one bag with the syllables, which
ranks better than syllables alone. The sweeps behind these choices are in benchmarks/quality.md.

Terms never contain whitespace: a bigram joins its two syllables with "_", which no token holds (`qa.text`), so an
engine indexes these terms as they are with a whitespace tokenizer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from qa.query import Query
from qa.text import strip_accents, tokenize

__all__ = ["ANALYSIS_VERSION", "PHRASE_WEIGHT", "PassageTerms", "QueryTerms", "analyze", "passage_terms", "query_terms"]

# Bump when the analysis (this module, `qa.text`) changes: lexical indexes built by another version are rebuilt.
ANALYSIS_VERSION = 2
PHRASE_WEIGHT = 0.3


@dataclass(frozen=True, slots=True)
class PassageTerms:
    syllables: list[str]
    phrases: list[str]
    folded: list[str]  # accent-free syllables, then their bigrams


@dataclass(frozen=True, slots=True)
class QueryTerms:
    """Distinct terms per field, in question order: `syllables` and `phrases` for an accented question, else
    `folded` alone."""

    syllables: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    folded: tuple[str, ...] = ()


def analyze(text: str, *, folded: bool, bigrams: bool = False) -> list[str]:
    """The terms one field indexes for `text` (or a question): syllables, then syllable bigrams."""
    tokens = tokenize(text)
    if folded:
        tokens = [f for f in map(_folded_syllable, tokens) if f]
    return tokens + bigrams_of(tokens) if bigrams else tokens


def passage_terms(text: str) -> PassageTerms:
    syllables = tokenize(text)
    folded = [f for f in map(_folded_syllable, syllables) if f]  # tokenised once: most of the cost
    return PassageTerms(syllables, bigrams_of(syllables), folded + bigrams_of(folded))


def query_terms(query: Query) -> QueryTerms:
    if query.folded:
        return QueryTerms(folded=_distinct(analyze(query.text, folded=True, bigrams=True)))
    syllables = analyze(query.text, folded=False)
    return QueryTerms(syllables=_distinct(syllables), phrases=_distinct(bigrams_of(syllables)))


def bigrams_of(tokens: Sequence[str]) -> list[str]:
    return [f"{a}_{b}" for a, b in zip(tokens, tokens[1:], strict=False)]


@lru_cache(maxsize=1 << 16)
def _folded_syllable(syllable: str) -> str:
    """`strip_accents` of one token, cached: a corpus repeats a few thousand syllables millions of times."""
    return strip_accents(syllable)


def _distinct(terms: Sequence[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(terms))
