"""Tone-mark restoration: the most probable marked form of a Vietnamese question typed without its diacritics (or
with only a few), so that the model, the accented lexical fields and the answer features read what was meant.

Each bare syllable may be any marked spelling that folds to it (`qa.text.spellings`: "duong" → đường, dương,
...); the corpus itself says which are likely: how many passages hold each spelling ("syllables") and each pair of
adjacent ones ("phrases"), asked of the lexical engine in two batched lookups (tantivy's term dictionary, or the
database's `term_stats` in the distributed deployment). A Viterbi over the syllable-pair counts, interpolated with
the syllable counts and a small general table (`syllables.tsv`, for words the corpus lacks), picks the sequence; the
forward-backward posteriors give each syllable's confidence, and the chosen sequence's share of all sequences the
confidence of the whole. Syllables the user marked are kept and constrain their neighbours; names (capitalised
words after the first), numbers and words that are not Vietnamese syllables stay as typed and cut the chain. A
question whose syllables mostly carry marks was typed with them: its bare syllables are meant bare ("ai", "ban").
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from qa.query import Query
from qa.text import canonical_tones, has_tone_marks, is_syllable, spellings, strip_accents, token_matches

__all__ = ["TABLE", "Counts", "Restoration", "Restored", "Smoothing", "restore"]

TABLE = Path(__file__).with_name("syllables.tsv")
# At or above this share of marked syllables a question was typed with its marks (how the dev sets' marked
# questions fall: benchmarks/quality.md, "Tone-mark restoration").
MARKED_SHARE = 0.5
_SENTENCE_END = re.compile(r"[.!?:;]\s*$")
# Spellings kept per syllable when the pairs are asked for (the rest are too rare to win).
_BEAM = 8


class Counts(Protocol):
    """Passage counts per term: a `qa.lexical.LexicalIndex`."""

    def __len__(self) -> int: ...

    def doc_freqs(self, field: str, terms: Sequence[str]) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class Smoothing:
    """How the counts combine (benchmarks/quality.md, "Tone-mark restoration"). A syllable's count is the corpus's
    plus `table` times the general table's share of it in as many passages as the corpus holds (at least `sample`);
    a pair's, the corpus's less `discount` (a pair one passage holds is weak evidence) plus `phrases` times the
    table's. A pair is interpolated with the next syllable's probability, weighted as `pair` passages plus a
    `spread` share of the previous syllable's count (Witten-Bell-like: the more passages hold a syllable, the more
    different syllables follow it). A spelling
    neither knows holds an `unknown` share of those passages, the bare one as typed a `bare` share (so that it wins
    when nothing is known)."""

    table: float = 0.1
    phrases: float = 3.0
    pair: float = 0.5
    spread: float = 0.02
    discount: float = 0.5
    sample: int = 1000
    unknown: float = 1e-6
    bare: float = 1e-4
    names: float = 0.5  # a name (capitalised after the first word) is restored only when at least this sure


@dataclass(frozen=True, slots=True)
class Restored:
    """One word of the question: as typed, as understood (the typed case kept), how sure (1.0 when kept as typed)."""

    typed: str
    text: str
    confidence: float
    restored: bool  # a bare syllable whose spelling was chosen (it may be the bare spelling itself)


@dataclass(frozen=True, slots=True)
class Restoration:
    typed: str
    text: str  # the question as understood
    words: tuple[Restored, ...]
    confidence: float  # the chance of the chosen sequence among every spelling of the restored syllables


@dataclass(slots=True)
class _Slot:
    """A token of the question: its candidate spellings (one when it is kept or was typed marked), lowercase."""

    options: list[str]
    bare: str


def restore(query: Query, counts: Counts, smoothing: Smoothing | None = None) -> Restoration | None:
    """The most probable marked form of `query`, or None when there is nothing to restore (another language, no
    bare Vietnamese syllable, a question typed with its marks) or its most probable form is the one typed."""
    if query.foreign or query.restoration is not None:
        return None
    smoothing = smoothing or Smoothing()
    text = query.text
    matches = token_matches(text)
    kinds = [_kind(m, text) for m in matches]
    bare, marked = kinds.count("bare"), kinds.count("marked")
    if not bare + kinds.count("name") or (marked and marked >= MARKED_SHARE * (bare + marked)):
        return None
    # Every token is a link of the chain, as the lexical index pairs them (punctuation between them is no break).
    slots = []
    for match, kind in zip(matches, kinds, strict=True):
        term = canonical_tones(match.group()).lower()
        slots.append(_Slot(list(spellings(term)) if kind in ("bare", "name") else [term], term))
    n_docs = len(counts)
    sample = max(n_docs, smoothing.sample)  # the passages the general table stands for
    table = _table()

    seen = _ask(counts, "syllables", [o for s in slots for o in s.options])
    unigrams = {term: n + smoothing.table * sample * table.get(term, 0.0) for term, n in seen.items()}
    for slot in slots:
        for option in slot.options:
            floor = smoothing.bare if option == slot.bare else smoothing.unknown
            unigrams[option] = max(unigrams[option], floor * sample)
        if len(slot.options) > 1:
            kept = sorted(slot.options, key=lambda o: -unigrams[o])[:_BEAM]
            slot.options = [o for o in slot.options if o in kept]
    adjacent = list(zip(slots, slots[1:], strict=False))
    # A pair is asked of the corpus only when both its syllables are in some passage: else no passage holds it.
    wanted = [
        (t, i, j, f"{x}_{y}")
        for t, (a, b) in enumerate(adjacent)
        for i, x in enumerate(a.options)
        if seen[x]
        for j, y in enumerate(b.options)
        if seen[y]
    ]
    found = counts.doc_freqs("phrases", [pair for *_, pair in wanted]) if wanted else []
    steps = [np.zeros((len(a.options), len(b.options))) for a, b in adjacent]  # each pair's count
    for (t, i, j, _), n in zip(wanted, found, strict=True):
        steps[t][i, j] = max(n - smoothing.discount, 0.0)
    followers = _table_pairs()
    for step, (a, b) in zip(steps, adjacent, strict=True):
        where = {y: j for j, y in enumerate(b.options)}
        for i, x in enumerate(a.options):
            for y, general in followers.get(x, {}).items():
                if y in where:
                    step[i, where[y]] += smoothing.phrases * sample * general
    single = [np.array([unigrams[o] for o in slot.options]) for slot in slots]
    path, marginals, whole = _decode(single, steps, n_docs + sample * smoothing.table, smoothing)
    picks = [slot.options[k] for slot, k in zip(slots, path, strict=True)]
    words: list[Restored] = []
    pieces: list[str] = []
    last = 0
    for match, kind, spelling, confidence in zip(matches, kinds, picks, marginals, strict=True):
        typed = match.group()
        if kind == "bare" or (kind == "name" and confidence >= smoothing.names):
            word = Restored(typed, _cased(spelling, typed), confidence, True)
        else:
            word = Restored(typed, typed, 1.0, False)
        words.append(word)
        pieces.extend((text[last : match.start()], word.text))
        last = match.end()
    pieces.append(text[last:])
    if "".join(pieces) == text:  # every bare syllable is most likely meant bare: read as typed
        return None
    return Restoration(text, "".join(pieces), tuple(words), math.exp(whole))


def _kind(match: re.Match[str], text: str) -> str:
    """What the token is: "bare" (a Vietnamese syllable without marks, to restore), "name" (one capitalised after
    the first word: restored only when sure), "marked" (typed with its marks), or "kept" (a number, an acronym, a
    foreign word)."""
    word = match.group()
    if not is_syllable(word):
        return "kept"
    if has_tone_marks(word):
        return "marked" if canonical_tones(word).lower() in spellings(strip_accents(word).lower()) else "kept"
    if not word.isascii():  # marks of another language (ç, ï): not a bare Vietnamese syllable
        return "kept"
    starts = match.start() == 0 or bool(_SENTENCE_END.search(text[: match.start()]))
    if len(word) > 1 and word.isupper():
        return "kept"
    return "name" if word[0].isupper() and not starts else "bare"


def _ask(counts: Counts, field: str, terms: list[str]) -> dict[str, int]:
    """One batched lookup of `terms` in `field`."""
    distinct = list(dict.fromkeys(terms))
    return dict(zip(distinct, counts.doc_freqs(field, distinct), strict=True)) if distinct else {}


def _decode(
    unigrams: list[np.ndarray], pairs: list[np.ndarray], total: float, smoothing: Smoothing
) -> tuple[list[int], list[float], float]:
    """Viterbi and forward-backward over the chain (per slot, its spellings' counts; per adjacent slots, their pairs'
    counts): the best spelling of each slot, its posterior, and the log of the best sequence's share of all.

    P(first) is its count over `total`; P(next | previous) the pair's count plus a back-off weight times the next
    one's probability, over the previous one's count plus that weight (`Smoothing.pair` passages plus a
    `Smoothing.spread` share of the previous one's count: a frequent syllable is followed by many others, so an
    unseen pair after it is less telling)."""
    steps = [
        np.log(held + backoff[:, None] * after[None, :] / total) - np.log(before + backoff)[:, None]
        for before, after, held, backoff in (
            (before, after, held, smoothing.pair + smoothing.spread * before)
            for before, after, held in zip(unigrams[:-1], unigrams[1:], pairs, strict=True)
        )
    ]
    best = [np.log(unigrams[0] / total)]
    forward = [best[0]]
    back = []
    for step in steps:
        scores = best[-1][:, None] + step
        back.append(scores.argmax(axis=0))
        best.append(scores.max(axis=0))
        forward.append(_logsumexp(forward[-1][:, None] + step, axis=0))
    backward = [np.zeros(len(unigrams[-1]))]
    for step in reversed(steps):
        backward.insert(0, _logsumexp(step + backward[0][None, :], axis=1))
    z = float(_logsumexp(forward[-1], axis=0))
    path = [int(best[-1].argmax())]
    for pointers in reversed(back):
        path.insert(0, int(pointers[path[0]]))
    marginals = [float(np.exp(f[k] + b[k] - z)) for f, b, k in zip(forward, backward, path, strict=True)]
    return path, marginals, float(best[-1][path[-1]]) - z


def _logsumexp(values: np.ndarray, axis: int) -> np.ndarray:
    top = values.max(axis=axis, keepdims=True)
    return (top + np.log(np.exp(values - top).sum(axis=axis, keepdims=True))).squeeze(axis)


def _cased(spelling: str, typed: str) -> str:
    return spelling[:1].upper() + spelling[1:] if typed[:1].isupper() else spelling


@lru_cache(maxsize=1)
def _table_pairs() -> dict[str, dict[str, float]]:
    """The general table's pairs: first syllable → second → share."""
    out: dict[str, dict[str, float]] = {}
    for term, share in _table().items():
        if "_" in term:
            first, second = term.split("_")
            out.setdefault(first, {})[second] = share
    return out


@lru_cache(maxsize=1)
def _table() -> dict[str, float]:
    """The general table: term → share of passages holding it."""
    lines = resources.files("qa").joinpath(TABLE.name).read_text(encoding="utf-8").splitlines()
    return {term: float(share) for term, share in (line.split("\t") for line in lines if line and line[0] != "#")}
