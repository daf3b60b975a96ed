"""BM25 over Vietnamese passages, updated in place as articles are written and deleted.

Three fields per passage: the accented syllables of `qa.text.tokenize`; their adjacent-syllable bigrams
("phrases": Vietnamese words are mostly two syllables, so a bigram stands for a word); and the syllables with
every diacritic removed plus their bigrams. A question typed with tone marks is scored as
BM25(syllables) + `phrase_weight` * BM25(phrases), a BM25F-style sum in which the word-level field refines the
syllable ranking without swamping it (mixing the bigrams into the syllable bag instead ranked worse). A question
without tone marks is scored against the accent-free field only, so "duong" meets both "đường" and "dương" while
"đường" typed with its marks stays apart from "dương"; there the bigrams share one bag with the syllables, which
ranks better than syllables alone. The sweeps behind these choices are in benchmarks/quality.md.
Postings are append-only arrays; a removed passage is a tombstone until compaction.
"""

from __future__ import annotations

import logging
import math
import pickle
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache

import numpy as np

from qa.text import strip_accents, tokenize

__all__ = ["LexicalIndex", "LexicalMatches", "analyze"]

log = logging.getLogger(__name__)

# Bump when the analysis (`analyze`, `qa.text`) or the fields of these classes change: snapshots written by
# another version are then rebuilt instead of loaded.
SNAPSHOT_VERSION = 1

# Lucene/bm25s defaults.
K1 = 1.2
B = 0.75


def analyze(text: str, *, folded: bool, bigrams: bool = False) -> list[str]:
    """The terms one field indexes for `text` (or a question): syllables, then syllable bigrams."""
    tokens = tokenize(text)
    if folded:
        tokens = strip_accents(" ".join(tokens)).split()
    if bigrams:
        tokens += _bigrams(tokens)
    return tokens


@lru_cache(maxsize=1 << 16)
def _folded_syllable(syllable: str) -> str:
    """`strip_accents` of one token, cached: a corpus repeats a few thousand syllables millions of times."""
    return strip_accents(syllable)


def _bigrams(tokens: Sequence[str]) -> list[str]:
    return [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]


class LexicalMatches:
    """The live passages matching a question, with their BM25 scores and `bound`, the best score possible.

    `bound` = sum over the question's distinct terms of idf * (k1 + 1): a passage containing every term
    many times approaches it; scores / bound is an absolute 0..1 measure of lexical match.

    Nothing is sorted up front: `top(n)` selects the best n (argpartition, ties in index order) and
    `scores_for(keys)` looks up given keys; `keys` / `scores` (every match, best first) are built on demand.
    """

    __slots__ = ("_hits", "_hit_scores", "_key_of", "_slot_of", "_scores", "bound", "_sorted")

    def __init__(
        self, hits: np.ndarray, scores: np.ndarray, key_of: np.ndarray, slot_of: dict[int, int], bound: float
    ) -> None:
        self._hits = hits  # matching slots, ascending
        self._hit_scores = scores[hits]
        self._scores = scores  # slot → score (0 where nothing matched or not allowed)
        self._key_of = key_of  # slot → key, a snapshot taken with the scores
        self._slot_of = slot_of  # the index's live key → slot map (may move on after the snapshot)
        self.bound = bound
        self._sorted: tuple[np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return int(self._hits.size)

    def top(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Keys (int64) and scores (float32) of the best `n` matches, best first, ties in index order."""
        hits, values = self._hits, self._hit_scores
        if n <= 0:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
        if n < hits.size:
            # Everything scoring at least the n-th best value (ties included), then a stable sort of those.
            kth = np.partition(-values, n - 1)[n - 1]
            keep = np.flatnonzero(-values <= kth)
            hits, values = hits[keep], values[keep]
        order = np.argsort(-values, kind="stable")[:n]
        return self._key_of[hits[order]], values[order]

    def scores_for(self, keys: Sequence[int]) -> np.ndarray:
        """BM25 (float32) of each of `keys`; 0 for a key that did not match."""
        out = np.zeros(len(keys), dtype=np.float32)
        size = self._key_of.size
        for i, key in enumerate(keys):
            slot = self._slot_of.get(key, -1)
            if not (0 <= slot < size and self._key_of[slot] == key):
                # Re-added or removed since the snapshot: find the slot the snapshot knew (rare).
                found = np.flatnonzero(self._key_of == key)
                if not found.size:
                    continue
                slot = int(found[0])
            out[i] = self._scores[slot]
        return out

    def _ranked(self) -> tuple[np.ndarray, np.ndarray]:
        if self._sorted is None:
            self._sorted = self.top(int(self._hits.size))
        return self._sorted

    @property
    def keys(self) -> np.ndarray:
        """Every matching key (int64), best first."""
        return self._ranked()[0]

    @property
    def scores(self) -> np.ndarray:
        """Their scores (float32), descending."""
        return self._ranked()[1]

    def as_dict(self) -> dict[int, float]:
        return dict(zip(self._key_of[self._hits].tolist(), self._hit_scores.tolist(), strict=True))


class _Field:
    """One inverted index: term → (slots, term frequencies); per slot, its terms for deletes and compaction."""

    def __init__(self) -> None:
        self.vocabulary: dict[str, int] = {}
        self.slots: list[array] = []  # term id → array('i') of slots
        self.tfs: list[array] = []  # term id → array('H') of term frequencies, parallel to slots
        self.df: list[int] = []  # term id → live documents containing it
        self.doc_terms: list[tuple[np.ndarray, np.ndarray] | None] = []  # slot → (term ids, tfs); None = free
        self.doc_len = array("i")
        self.total_len = 0

    def add(self, slot: int, terms: Sequence[str]) -> None:
        counts = Counter(terms)
        tfs = np.minimum(np.fromiter(counts.values(), dtype=np.int64, count=len(counts)), 65_535).astype(np.uint16)
        ids: list[int] = []
        vocabulary, postings, frequencies, df = self.vocabulary, self.slots, self.tfs, self.df
        for term, tf in zip(counts, tfs.tolist(), strict=True):  # the hot loop of a rebuild
            term_id = vocabulary.get(term)
            if term_id is None:
                term_id = vocabulary[term] = len(postings)
                postings.append(array("i"))
                frequencies.append(array("H"))
                df.append(0)
            postings[term_id].append(slot)
            frequencies[term_id].append(tf)
            df[term_id] += 1
            ids.append(term_id)
        while len(self.doc_terms) <= slot:
            self.doc_terms.append(None)
            self.doc_len.append(0)
        self.doc_terms[slot] = (np.array(ids, dtype=np.int32), tfs)
        self.doc_len[slot] = len(terms)
        self.total_len += len(terms)

    def remove(self, slot: int) -> None:
        """Tombstone: df and lengths forget the document at once; its postings stay until `compact`."""
        entry = self.doc_terms[slot]
        if entry is None:
            return
        for term_id in entry[0].tolist():
            self.df[term_id] -= 1
        self.total_len -= self.doc_len[slot]
        self.doc_len[slot] = 0
        self.doc_terms[slot] = None

    def compact(self, alive: np.ndarray) -> None:
        """Drop postings of dead slots (slot numbers are kept, so the owner's maps stay valid)."""
        for term_id in range(len(self.slots)):
            slots = np.frombuffer(self.slots[term_id], dtype=np.int32)
            if slots.size and not alive[slots].all():
                keep = alive[slots]
                self.slots[term_id] = array("i", slots[keep].tobytes())
                self.tfs[term_id] = array("H", np.frombuffer(self.tfs[term_id], dtype=np.uint16)[keep].tobytes())

    def scores(self, terms: Iterable[str], n_docs: int, size: int) -> tuple[np.ndarray, float]:
        """BM25 of every slot for the distinct `terms`, and the bound (see `LexicalMatches`)."""
        scores = np.zeros(size, dtype=np.float32)
        bound = 0.0
        if n_docs == 0:
            return scores, bound
        avg_len = max(self.total_len / n_docs, 1.0)
        doc_len = np.frombuffer(self.doc_len, dtype=np.int32)[:size].astype(np.float32)
        norm = K1 * (1.0 - B + B * doc_len / avg_len)
        for term in set(terms):
            term_id = self.vocabulary.get(term)
            if term_id is None or self.df[term_id] <= 0:
                continue
            df = self.df[term_id]
            idf = math.log(1.0 + (n_docs - df + 0.5) / (df + 0.5))
            bound += idf * (K1 + 1.0)
            slots = np.frombuffer(self.slots[term_id], dtype=np.int32)
            tf = np.frombuffer(self.tfs[term_id], dtype=np.uint16).astype(np.float32)
            # Slots are distinct within one posting list, so fancy-index += is exact.
            scores[slots] += idf * tf * (K1 + 1.0) / (tf + norm[slots])
        return scores, bound


class LexicalIndex:
    """BM25 over passage keys: accented syllables and phrases, and an accent-free field; safe to share between threads.

    `phrase_weight` 0 drops the phrase field (and its memory).
    """

    def __init__(
        self,
        *,
        phrase_weight: float = 0.3,
        compact_ratio: float = 0.3,
    ) -> None:
        if phrase_weight < 0:
            raise ValueError("phrase_weight must not be negative")
        self.phrase_weight = phrase_weight
        self.compact_ratio = compact_ratio
        self._accented = _Field()
        self._phrases = _Field()
        self._folded = _Field()
        self._slot_of: dict[int, int] = {}
        self._key_of = array("q")  # slot → key, -1 when free
        self._dead = 0
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._slot_of)

    def __contains__(self, key: int) -> bool:
        return key in self._slot_of

    def add(self, items: Iterable[tuple[int, str]]) -> None:
        """Index (key, text) pairs; a key already present is replaced."""
        analysed = []
        for key, text in items:
            syllables = analyze(text, folded=False)
            phrases = _bigrams(syllables) if self.phrase_weight else []
            # = analyze(text, folded=True, ...) without tokenising the text a second time (most of the cost)
            folded = [f for f in map(_folded_syllable, syllables) if f]
            folded += _bigrams(folded)
            analysed.append((key, syllables, phrases, folded))
        with self._lock:
            for key, accented, phrases, folded in analysed:
                if key in self._slot_of:
                    self._remove_one(key)
                slot = len(self._key_of)
                self._key_of.append(key)
                self._slot_of[key] = slot
                self._accented.add(slot, accented)
                self._phrases.add(slot, phrases)
                self._folded.add(slot, folded)

    def remove(self, keys: Iterable[int]) -> None:
        with self._lock:
            for key in keys:
                if key in self._slot_of:
                    self._remove_one(key)
            if self._dead > self.compact_ratio * max(len(self._key_of), 1) and self._dead > 64:
                self._compact()

    def _remove_one(self, key: int) -> None:
        slot = self._slot_of.pop(key)
        self._accented.remove(slot)
        self._phrases.remove(slot)
        self._folded.remove(slot)
        self._key_of[slot] = -1
        self._dead += 1

    def _compact(self) -> None:
        alive = np.frombuffer(self._key_of, dtype=np.int64) >= 0
        self._accented.compact(alive)
        self._phrases.compact(alive)
        self._folded.compact(alive)
        self._dead = 0
        log.debug("lexical index compacted: %d live passages", len(self._slot_of))

    def _config(self) -> dict[str, object]:
        return {
            "version": SNAPSHOT_VERSION,
            "phrase_weight": self.phrase_weight,
        }

    def save(self, file: str, tag: Mapping[str, object]) -> None:
        """Write a snapshot of the postings to `file` with `tag` (the owner's stamp, e.g. its data generation)."""
        with self._lock:
            state = {k: v for k, v in self.__dict__.items() if k != "_lock"}
            with open(file, "wb") as fh:
                pickle.dump({"tag": {**tag, **self._config()}, "state": state}, fh, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self, file: str, tag: Mapping[str, object]) -> bool:
        """Replace this (empty) index by the snapshot in `file` if it carries `tag` and this configuration.

        False, with this index untouched, when the file is missing, unreadable or stamped otherwise. The file is
        the owner's own derived data (like the FAISS file beside it), not input from elsewhere.
        """
        try:
            with open(file, "rb") as fh:
                snapshot = pickle.load(fh)
            if snapshot.get("tag") != {**tag, **self._config()}:
                return False
            state = snapshot["state"]
            if set(state) != {k for k in self.__dict__ if k != "_lock"}:
                return False
        except FileNotFoundError:
            return False
        except Exception as exc:  # a truncated or foreign file: rebuild
            log.warning("BM25 snapshot %s unreadable (%s): rebuilding it", file, exc)
            return False
        with self._lock:
            self.__dict__.update(state)
        return True

    def search(self, question: str, *, folded: bool, allowed: np.ndarray | None = None) -> LexicalMatches:
        """Every passage sharing a term with `question`, best first, optionally only among `allowed` keys.

        `folded` picks the field: the accent-free one for a question typed without tone marks (`Query.folded`).
        """
        terms = analyze(question, folded=folded, bigrams=folded)
        with self._lock:
            size, n_docs = len(self._key_of), len(self._slot_of)
            if folded:
                scores, bound = self._folded.scores(terms, n_docs, size)
            else:
                scores, bound = self._accented.scores(terms, n_docs, size)
                if self.phrase_weight:
                    phrase_scores, phrase_bound = self._phrases.scores(_bigrams(terms), n_docs, size)
                    scores += np.float32(self.phrase_weight) * phrase_scores
                    bound += self.phrase_weight * phrase_bound
            key_of = np.frombuffer(self._key_of, dtype=np.int64)[:size].copy()
        mask = (scores > 0) & (key_of >= 0)
        if allowed is not None:
            mask &= np.isin(key_of, np.asarray(allowed, dtype=np.int64))
            scores[~mask] = 0.0
        return LexicalMatches(np.flatnonzero(mask), scores, key_of, self._slot_of, bound)
