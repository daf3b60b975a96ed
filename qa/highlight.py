"""Find the sentence(s) of a passage that answer a question, as character spans into the passage text.

Two signals per sentence: lexical overlap with the question (terms and term pairs), and, when the caller has
them, the cosine of the question with each sentence encoded by the retrieval model ("title\nsentence" as a
passage). Both are standardised over the passage's sentences and summed as z(cosine) + 0.5 * z(overlap) for a
question with tone marks; a question in another language uses the cosine alone (it shares no words with the
passage) and a Vietnamese question typed without tone marks the overlap alone (the model is nearly blind to
unaccented Vietnamese). Measured in benchmarks/quality.md (highlight@1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from qa.domain import Passage
from qa.query import Query
from qa.scoring import zscores
from qa.text import strip_accents, tokenize

# Function words carry no evidence of an answer; questions are full of them.
_STOPWORDS = frozenset(
    """
    ai gì nào đâu sao bao nhiêu mấy khi lúc thế nào như vì tại có không là của và các những một được
    bị cho với trong ở tại về theo từ đến này đó kia thì mà hay hoặc đã đang sẽ rồi chưa nhé ạ
    """.split()
)


@lru_cache(maxsize=8192)
def _sentence_terms(text: str, folded: bool) -> tuple[str, ...]:
    """Cached: the sentences of the hits near the top come back question after question."""
    return tuple(_terms(text, folded))


def _terms(text: str, folded: bool) -> list[str]:
    tokens = [t for t in tokenize(text) if t not in _STOPWORDS]
    return [strip_accents(t) for t in tokens] if folded else tokens


# Weight of the standardised lexical overlap next to the standardised cosine, chosen on both dev sets
# (benchmarks/quality.md, "Highlighting").
LEXICAL_WEIGHT = 0.5


def overlap_scores(query: Query, passage: Passage) -> list[float]:
    """Per sentence: question terms and term pairs found in it, over log length (0.0 = nothing shared).

    A question typed without tone marks is matched against the accent-free sentence.
    """
    folded = query.folded
    q_terms = _terms(query.text, folded)
    q_set = set(q_terms)
    q_pairs = set(zip(q_terms, q_terms[1:], strict=False))
    out = []
    for start, end in passage.sentences:
        s_terms = _sentence_terms(passage.text[start:end], folded)
        if not s_terms or not q_set:
            out.append(0.0)
            continue
        overlap = len(q_set.intersection(s_terms))
        pairs = len(q_pairs.intersection(zip(s_terms, s_terms[1:], strict=False)))
        # Dividing by log length keeps a long sentence from winning on size alone.
        out.append((overlap + 2 * pairs) / math.log(len(s_terms) + 2))
    return out


def highlight(
    query: Query,
    passage: Passage,
    *,
    sentence_cosines: Sequence[float] | None = None,
    max_sentences: int = 1,
) -> tuple[tuple[int, int], ...]:
    """Spans of the sentences that best answer `query`, in passage order.

    `sentence_cosines` (one per `passage.sentences`) adds the model's signal; without it, or for an unaccented
    Vietnamese question, only sentences sharing a term with the question can be highlighted.
    """
    if not passage.sentences:
        return ()
    lexical = np.asarray(overlap_scores(query, passage), dtype=np.float64)
    if sentence_cosines is None or not query.reads_model:
        eligible = lexical > 0
        scores = lexical
    else:
        cosines = np.asarray(sentence_cosines, dtype=np.float64)
        if cosines.shape != lexical.shape:
            raise ValueError("one cosine per sentence expected")
        eligible = np.ones_like(lexical, dtype=bool)
        scores = zscores(cosines)
        if not query.foreign:
            scores = scores + LEXICAL_WEIGHT * zscores(lexical)
    ranked = sorted((i for i in range(len(scores)) if eligible[i]), key=lambda i: (-scores[i], i))
    return tuple(sorted(passage.sentences[i] for i in ranked[:max_sentences]))
