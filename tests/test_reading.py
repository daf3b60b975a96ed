"""What answer selection reads of a text (`qa.reading`): stored at index time, decoded unchanged, and what the
question path uses instead of reading the hits' sentences again."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import qa.answer
from qa.answer import Evidence, features
from qa.query import Query
from qa.reading import Reading, _folded, dumps, loads, passage_readings, read
from qa.retriever import Retriever
from qa.text import strip_accents, tokenize
from tests.fakes import HashingEncoder
from tests.test_answer import TEXT, flat_idf, passage
from tests.test_store import BODY_A, BODY_B, item, make_article

news_text = st.text(
    alphabet=st.sampled_from(list("aăâeêioôơuưyđAĐHNTQ hqngtc0123456789.,/%:\n\t\u00a0\u2028") + ["\u0301", "\u0309"])
)


@given(st.lists(news_text, max_size=4))
@example(["Ông Nguyễn Văn An nói năm 2019, tại Hà Nội giá tăng 1.500 đồng (20%)."])
@example(["", " ", "\u00a0"])
def test_readings_survive_their_storage(texts):
    readings = [read(t) for t in texts]
    assert loads(dumps(readings)) == readings


@given(news_text)
@example("Đường Ngọc Khánh, quận Ba Đình: 1.500 xe/ngày (20%)")
def test_tokens_folded_at_once_fold_as_each_alone(text):
    tokens = tuple(tokenize(text))
    assert _folded(tokens) == tuple(strip_accents(t) for t in tokens)


def test_a_passage_reads_as_its_sentences_then_its_title():
    p = passage()
    readings = passage_readings("Hội nghị ở Hà Nội", p)
    assert readings == [read(p.text[a:b]) for a, b in p.sentences] + [read("Hội nghị ở Hà Nội")]


@pytest.mark.parametrize("question", ["Ai chủ trì cuộc họp?", "Hoi nghi dien ra o dau?", "Who chaired the meeting?"])
def test_stored_readings_give_the_features_read_from_the_text(question):
    hits = [passage(TEXT, "a"), passage("Quận có 38 tổ chức cơ sở Đảng. Năm 2020 quận thu 11.085 tỷ đồng.", "b")]
    titles = ["Hội nghị quận", "Ngân sách quận"]
    cosines = [np.linspace(0.2, 0.8, len(h.sentences)) for h in hits]
    plain = [Evidence(h, t, 1.0 - i / 2, c, 0.3) for i, (h, t, c) in enumerate(zip(hits, titles, cosines, strict=True))]
    stored = [
        Evidence(h, t, 1.0 - i / 2, c, 0.3, loads(dumps(passage_readings(t, h))))
        for i, (h, t, c) in enumerate(zip(hits, titles, cosines, strict=True))
    ]
    query = Query.parse(question)
    (c1, x1), (c2, x2) = features(query, plain, flat_idf), features(query, stored, flat_idf)
    assert c1 == c2
    np.testing.assert_array_equal(x1, x2)


@pytest.mark.every_database
def test_a_question_reads_only_itself_when_the_index_stores_readings(store, monkeypatch):
    store.upsert([item(make_article("a", BODY_A)), item(make_article("b", BODY_B))], origin="seed")
    calls: list[str] = []

    def counting(text: str) -> Reading:
        calls.append(text)
        return read(text)

    monkeypatch.setattr(qa.answer, "read", counting)
    retriever = Retriever(store, HashingEncoder())
    result = retriever.search("Quận có bao nhiêu tổ chức cơ sở Đảng?", top_k=3)
    assert result.hits and result.evidence
    assert all(ev.readings is not None for ev in result.evidence)
    assert set(calls) == {Query.parse("Quận có bao nhiêu tổ chức cơ sở Đảng?").text}
