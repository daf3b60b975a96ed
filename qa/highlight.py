"""Find the sentence(s) of a passage that answer a question, as character spans into the passage text."""

from __future__ import annotations

import math

from qa.chunking import Passage
from qa.text import strip_accents, tokenize

# Function words carry no evidence of an answer; questions are full of them.
_STOPWORDS = frozenset(
    """
    ai gì nào đâu sao bao nhiêu mấy khi lúc thế nào như vì tại có không là của và các những một được
    bị cho với trong ở tại về theo từ đến này đó kia thì mà hay hoặc đã đang sẽ rồi chưa nhé ạ
    """.split()
)


def _terms(text: str, folded: bool) -> list[str]:
    tokens = [t for t in tokenize(text) if t not in _STOPWORDS]
    return [strip_accents(t) for t in tokens] if folded else tokens


def highlight(question: str, passage: Passage, *, max_sentences: int = 1) -> tuple[tuple[int, int], ...]:
    """Spans of the best-matching sentences: question terms and term pairs found in each sentence.

    A question typed without tone marks is matched against the accent-free sentence.
    """
    folded = strip_accents(question) == question
    q_terms = _terms(question, folded)
    if not q_terms or not passage.sentences:
        return ()
    q_set = set(q_terms)
    q_pairs = set(zip(q_terms, q_terms[1:], strict=False))
    scored: list[tuple[float, int, tuple[int, int]]] = []
    for i, (start, end) in enumerate(passage.sentences):
        s_terms = _terms(passage.text[start:end], folded)
        if not s_terms:
            continue
        overlap = len(q_set.intersection(s_terms))
        pairs = len(q_pairs.intersection(zip(s_terms, s_terms[1:], strict=False)))
        # Dividing by log length keeps a long sentence from winning on size alone.
        score = (overlap + 2 * pairs) / math.log(len(s_terms) + 2)
        if overlap:
            scored.append((score, -i, (start, end)))
    scored.sort(reverse=True)
    return tuple(sorted(span for _, _, span in scored[:max_sentences]))
