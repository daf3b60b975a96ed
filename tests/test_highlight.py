"""Answer highlighting: lexical overlap, the model's sentence cosines, and which signal each question uses."""

from __future__ import annotations

from qa.domain import Passage
from qa.highlight import highlight
from qa.query import Query

TEXT = (
    "Hội nghị diễn ra sáng nay tại Hà Nội. "
    "Đồng chí Hoàng Trung Hải chủ trì cuộc họp. "
    "Các đại biểu thảo luận về kế hoạch năm 2020."
)


def passage(text: str = TEXT) -> Passage:
    spans, start = [], 0
    for part in text.split(". "):
        end = start + len(part) + (1 if not part.endswith(".") else 0)
        spans.append((start, min(end, len(text))))
        start = end + 1
    return Passage("a:0", "a", 0, text, 0, len(text), tuple(spans))


def sentence(p: Passage, spans: tuple[tuple[int, int], ...]) -> str:
    (a, b), *_ = spans
    return p.text[a:b]


def test_lexical_overlap_alone():
    p = passage()
    assert "Hoàng Trung Hải" in sentence(p, highlight(Query.parse("Ai chủ trì cuộc họp?"), p))
    assert "Hoàng Trung Hải" in sentence(p, highlight(Query.parse("ai chu tri cuoc hop"), p))
    assert highlight(Query.parse("giá vàng"), p) == ()  # nothing shared, no model signal: nothing highlighted


def test_cosines_decide_for_a_foreign_question():
    p = passage()
    spans = highlight(Query.parse("who chaired the meeting"), p, sentence_cosines=[0.1, 0.9, 0.2])
    assert "Hoàng Trung Hải" in sentence(p, spans)
    assert highlight(Query.parse("who chaired the meeting"), p) == ()  # English shares no words without the model


def test_cosines_and_overlap_combine_for_an_accented_question():
    p = passage()
    # Overlap points at the second sentence; a clearly stronger cosine on the third outweighs it.
    assert "2020" in sentence(p, highlight(Query.parse("Ai chủ trì cuộc họp?"), p, sentence_cosines=[0.0, 0.0, 1.0]))
    # Equal cosines: overlap decides.
    spans = highlight(Query.parse("Ai chủ trì cuộc họp?"), p, sentence_cosines=[0.5, 0.5, 0.5])
    assert "Hoàng Trung Hải" in sentence(p, spans)


def test_unaccented_question_ignores_cosines():
    p = passage()
    spans = highlight(Query.parse("ai chu tri cuoc hop"), p, sentence_cosines=[0.0, 0.0, 1.0])
    assert "Hoàng Trung Hải" in sentence(p, spans)


def test_spans_are_in_passage_order_and_empty_passages_are_fine():
    p = passage()
    spans = highlight(Query.parse("Hội nghị Hoàng Trung Hải"), p, max_sentences=2)
    assert list(spans) == sorted(spans) and len(spans) == 2
    empty = Passage("a:1", "a", 1, "", 0, 0, ())
    assert highlight(Query.parse("Ai chủ trì?"), empty, sentence_cosines=[]) == ()
