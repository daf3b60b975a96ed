"""Tone-mark restoration (`qa.restore`) over a real tantivy index of a few passages: what is restored, what is kept as
typed, the confidences, and the lexical terms a restored question asks for."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qa.derived import PassageRow
from qa.lexical.analysis import query_terms
from qa.lexical.tantivy import TantivyIndex
from qa.query import Query
from qa.restore import Restoration, restore
from qa.text import is_syllable, spellings, strip_accents

PASSAGES = [
    "Quận Nam Từ Liêm có 10.254 đảng viên, chiếm 92% kế hoạch năm 2020.",
    "Đường Láng ở quận Đống Đa được mở rộng năm 2020; con đường dài 4 km.",
    "Giá xăng RON 95 tăng từ chiều nay, giá điện giữ nguyên.",
    "Ông Nguyễn Văn Minh là chủ tịch quận; ông chủ trì cuộc họp về giá điện.",
    "Người dân quận Đống Đa hỏi giá nhà ở xã hội là bao nhiêu.",
    "Dương Văn Minh là tổng thống cuối cùng. Tom Hanks đóng phim ở Hà Nội.",
]


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> TantivyIndex:
    lexical = TantivyIndex.create(tmp_path_factory.mktemp("restore") / "lexical")
    empty = np.empty(0, dtype=np.float32)
    lexical.apply([], [PassageRow(key, text, empty) for key, text in enumerate(PASSAGES, 1)])
    return lexical


def restored(index: TantivyIndex, question: str) -> Restoration:
    restoration = restore(Query.parse(question), index)
    assert restoration is not None, question
    return restoration


def test_spellings_are_every_marked_syllable_that_folds_to_the_bare_one():
    assert {"ban", "bàn", "bán", "bản", "bạn", "bận", "bắn"} <= set(spellings("ban"))
    assert spellings("ban")[0] == "ban"
    assert {"đường", "dương", "đương", "dưỡng"} <= set(spellings("duong"))
    assert "hòa" in spellings("hoa") and "hoà" not in spellings("hoa")  # the tone where `canonical_tones` puts it
    assert all(strip_accents(s) == "nguoi" for s in spellings("nguoi"))
    assert spellings("strength") == () and spellings("what") == ()
    assert is_syllable("Nguyen") and is_syllable("đường") and not is_syllable("Broncos")


def test_an_unmarked_question_is_restored_from_the_corpus_counts(index):
    r = restored(index, "Quan Dong Da gia nha o xa hoi la bao nhieu?")
    assert r.text == "Quận Đống Đa giá nhà ở xã hội là bao nhiêu?"
    assert r.typed == "Quan Dong Da gia nha o xa hoi la bao nhieu?"
    assert [w.typed for w in r.words] == r.typed.rstrip("?").split()
    assert all(0.0 < w.confidence <= 1.0 for w in r.words)
    assert 0.0 < r.confidence <= min(w.confidence for w in r.words)


def test_syllables_the_user_marked_are_kept_and_decide_their_neighbours(index):
    r = restored(index, "Ông chu tri cuộc hop ve gia dien")
    assert r.text == "Ông chủ trì cuộc họp về giá điện"
    assert [w.restored for w in r.words] == [False, True, True, False, True, True, True, True]
    # A question typed with its marks (most of its syllables) is read as typed: its bare syllables are meant bare.
    assert restore(Query.parse("Ai là chủ tịch quận Nam Từ Liêm?"), index) is None


def test_names_numbers_and_foreign_words_stay_as_typed(index):
    r = restored(index, "Tom Hanks dong phim o dau?")
    assert r.text == "Tom Hanks đóng phim ở đâu?"
    r = restored(index, "xang RON 95 tang, 10.254 dang vien 92%?")
    assert [w.text for w in r.words] == ["xăng", "RON", "95", "tăng", "10.254", "đảng", "viên", "92%"]
    assert [w.restored for w in r.words if not w.text.isalpha()] == [False, False, False]


def test_a_name_is_restored_only_when_sure(index):
    r = restored(index, "quan Nam Tu Liem co bao nhieu dang vien")
    assert r.text == "quận Nam Từ Liêm có bao nhiêu đảng viên"
    # "Mmm" is no Vietnamese syllable; "Bao" (capitalised, mid-sentence), never seen with marks, stays bare.
    r = restored(index, "quan co Mmm Bao")
    assert r.words[2].text == "Mmm" and not r.words[2].restored and r.words[3].text == "Bao"


def test_another_language_and_an_empty_question_are_left_alone(index):
    assert restore(Query.parse("What is the price of electricity in Dong Da?"), index) is None
    assert restore(Query.parse("2020"), index) is None
    assert restore(Query.parse("Çï Noël"), index) is None  # marks of another language: no Vietnamese syllable
    assert restore(Query.parse("Đường Láng dài bao nhiêu?"), index) is None
    # Partly marked, but its bare syllables are most likely meant bare: read as typed.
    assert restore(Query.parse("Tom Hanks bao nhiêu tuổi?"), index) is None


def test_restoration_is_the_same_on_an_empty_index(tmp_path):
    """No counts: the general table and the bare spelling decide; nothing fails."""
    empty = TantivyIndex.create(tmp_path / "lexical")
    r = restored(empty, "bao nhieu nguoi")
    assert r.text == "bao nhiêu người"


def test_a_restored_question_asks_the_accent_free_field_as_typed(index):
    query = Query.parse("quan Dong Da gia nha bao nhieu")
    restored_query = query.restored(restored(index, query.text))
    assert restored_query.text == "quận Đống Đa giá nhà bao nhiêu"
    assert restored_query.accented and restored_query.folded and restored_query.typed == query.text
    assert query_terms(restored_query) == query_terms(query)
    assert query_terms(restored_query).folded[:3] == ("quan", "dong", "da")


WORDS = ["quan", "Dong", "Da", "gia", "điện", "bao", "nhieu", "2020", "RON", "Tom", "duong", "ở", "xyz", "Çï", ",", "?"]


@pytest.mark.hypothesis
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(WORDS), min_size=1, max_size=10))
def test_restoration_only_adds_marks_to_the_bare_syllables(index, words):
    question = Query.parse(" ".join(words))
    r = restore(question, index)
    if r is None:
        return
    assert strip_accents(r.text) == strip_accents(question.text)
    assert r.typed == question.text and len(r.words) == len(question.text.replace(",", " ").replace("?", " ").split())
    for word in r.words:
        assert word.text == word.typed or (word.restored and strip_accents(word.text) == word.typed)
        assert 0.0 < word.confidence <= 1.0
