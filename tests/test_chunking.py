"""Tests for qa.chunking: sentence spans and passage packing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qa.chunking import chunk_article, chunk_text, split_sentences
from qa.corpus import read_articles
from qa.domain import Article, Passage
from tests.conftest import examples

SEEDS = Path(__file__).resolve().parent.parent / "seeds"


def sentences(text: str) -> list[str]:
    return [text[start:end] for start, end in split_sentences(text)]


def words(text: str) -> int:
    return len(text.split())


@pytest.fixture(scope="module")
def seeds() -> list[Article]:
    return list(read_articles([SEEDS]))


class TestSplitSentences:
    def test_basic_breaks_and_paragraphs(self) -> None:
        text = "Câu một. Câu hai! Câu ba?\nĐoạn mới không dấu\n\n  Đoạn cuối.  "
        assert sentences(text) == ["Câu một.", "Câu hai!", "Câu ba?", "Đoạn mới không dấu", "Đoạn cuối."]

    @pytest.mark.parametrize(
        "sentence",
        [
            "Ước thu cả năm 2020 đạt 11.085,046 tỷ đồng, đạt 100,52% dự toán giao.",
            "Kế hoạch ban hành ngày 15/6/2020. 5 đơn vị tham gia.",
            "Hội nghị tại TP. Hà Nội diễn ra sáng nay.",
            "Ông ThS. Nguyễn Văn A phát biểu.",
            "Các PGS.TS. Trần B và GS. Lê C cùng dự.",
            "Bài viết của H. Hạnh và X.Sinh đăng sáng nay.",
            "Nhiều hoạt động v.v. Đều diễn ra tốt.",
        ],
    )
    def test_no_break_inside_numbers_dates_abbreviations(self, sentence: str) -> None:
        expected = sentence.split(" 5 đơn vị")[0] if "15/6/2020" in sentence else sentence
        assert sentences(sentence)[0] == expected

    def test_no_break_inside_quotes(self) -> None:
        text = "“Không được xa rời kiểm tra. Quận ủy phải tổ chức”, ông nói. Sau đó họp tiếp."
        assert sentences(text) == ["“Không được xa rời kiểm tra. Quận ủy phải tổ chức”, ông nói.", "Sau đó họp tiếp."]

    def test_quote_closing_after_terminator_ends_sentence(self) -> None:
        assert sentences('Ông nói: "Tốt lắm." Mọi người vỗ tay.') == ['Ông nói: "Tốt lắm."', "Mọi người vỗ tay."]

    def test_unclosed_quote_does_not_swallow_the_paragraph(self) -> None:
        assert sentences("Ông nói “tốt. Hai câu. Ba câu.") == ["Ông nói “tốt.", "Hai câu.", "Ba câu."]

    def test_ellipsis_breaks_only_before_uppercase(self) -> None:
        text = "Sáng - Xanh - Sạch... thiết thực. Năm 2021…Trước mắt vẫn vậy… Sau đó khác."
        assert sentences(text) == ["Sáng - Xanh - Sạch... thiết thực.", "Năm 2021…Trước mắt vẫn vậy…", "Sau đó khác."]

    def test_list_marker_stays_with_its_item(self) -> None:
        assert sentences("1. Nội dung thứ nhất. 2. Nội dung thứ hai.") == [
            "1. Nội dung thứ nhất.",
            "2. Nội dung thứ hai.",
        ]

    def test_empty(self) -> None:
        assert split_sentences("") == [] and split_sentences(" \n\t ") == []

    @given(st.text())
    def test_spans_trimmed_ordered_and_covering(self, text: str) -> None:
        spans = split_sentences(text)
        covered: set[int] = set()
        previous_end = 0
        for start, end in spans:
            assert previous_end <= start < end <= len(text)
            assert not text[start].isspace() and not text[end - 1].isspace()
            covered.update(range(start, end))
            previous_end = end
        assert all(i in covered for i, char in enumerate(text) if not char.isspace())


def check_passages(article_id: str, body: str, passages: list[Passage]) -> None:
    """Invariants every chunking result must hold."""
    assert [p.ordinal for p in passages] == list(range(len(passages)))
    assert [p.id for p in passages] == [f"{article_id}:{i}" for i in range(len(passages))]
    covered: set[int] = set()
    for passage in passages:
        assert passage.article_id == article_id
        assert body[passage.start : passage.end] == passage.text
        assert passage.sentences and passage.sentences[0][0] == 0 and passage.sentences[-1][1] == len(passage.text)
        for start, end in passage.sentences:
            assert 0 <= start < end <= len(passage.text)
        covered.update(range(passage.start, passage.end))
    assert all(i in covered for i, char in enumerate(body) if not char.isspace())


class TestChunkSeeds:
    def test_invariants_and_word_bounds(self, seeds: list[Article]) -> None:
        for article in seeds:
            passages = chunk_article(article)
            check_passages(article.id, article.body, passages)
            assert all(words(p.text) <= 160 for p in passages)
            assert len(passages) >= 2

    def test_numbers_and_abbreviations_survive_in_one_sentence(self, seeds: list[Article]) -> None:
        article = next(a for a in seeds if a.id.startswith("003"))
        sentence_texts = {p.text[s:e] for p in chunk_article(article) for s, e in p.sentences}
        assert any("đạt 11.085,046 tỷ đồng, đạt 100,52% dự toán giao." in s for s in sentence_texts)

    def test_ids_stable(self, seeds: list[Article]) -> None:
        again = list(read_articles([SEEDS]))
        assert [chunk_article(a) for a in seeds] == [chunk_article(a) for a in again]


def make_body(sentence_words: list[int], paragraph_every: int = 0) -> str:
    parts = []
    for index, count in enumerate(sentence_words):
        separator = "\n\n" if paragraph_every and index and index % paragraph_every == 0 else " "
        parts.append(("" if index == 0 else separator) + " ".join(["Câu"] + ["chữ"] * (count - 2) + ["hết."]))
    return "".join(parts)


class TestChunkText:
    def test_empty_body(self) -> None:
        assert chunk_text("a", "") == [] and chunk_text("a", " \n\n ") == []

    def test_short_body_is_one_passage(self) -> None:
        passages = chunk_text("a", "Câu một. Câu hai.")
        assert [(p.id, p.text, p.sentences) for p in passages] == [("a:0", "Câu một. Câu hai.", ((0, 8), (9, 17)))]

    def test_target_and_max_respected(self) -> None:
        body = make_body([30] * 20)
        passages = chunk_text("a", body, target_words=100, max_words=130, min_words=50, overlap_sentences=1)
        check_passages("a", body, passages)
        assert all(words(p.text) <= 130 for p in passages)
        assert all(words(p.text) >= 50 for p in passages)

    def test_overlap_by_sentences(self) -> None:
        body = make_body([30] * 20)
        passages = chunk_text("a", body, target_words=90, max_words=120, min_words=30, overlap_sentences=1)
        for before, after in zip(passages, passages[1:], strict=False):
            last_before = before.sentences[-1]
            first_after = after.sentences[0]
            assert before.start + last_before[0] == after.start + first_after[0]
        no_overlap = chunk_text("a", body, target_words=90, max_words=120, min_words=30, overlap_sentences=0)
        assert all(a.end < b.start for a, b in zip(no_overlap, no_overlap[1:], strict=False))
        assert len(no_overlap) < len(passages)

    def test_long_sentence_split_at_word_boundaries(self) -> None:
        body = "Mở đầu ngắn. " + " ".join(["Dài"] + ["chữ"] * 349) + ". Kết thúc."
        passages = chunk_text("a", body, target_words=100, max_words=120, min_words=10, overlap_sentences=1)
        check_passages("a", body, passages)
        assert all(words(p.text) <= 120 for p in passages)
        for passage in passages:
            for start, end in passage.sentences:
                piece = passage.text[start:end]
                assert piece == piece.strip() and words(piece) <= 120

    def test_short_last_passage_merges(self) -> None:
        body = make_body([50, 50, 10])
        passages = chunk_text("a", body, target_words=100, max_words=160, min_words=60, overlap_sentences=0)
        assert len(passages) == 1 and passages[0].text == body

    def test_paragraph_boundary_preferred(self) -> None:
        body = make_body([35] * 6, paragraph_every=2)  # paragraphs of 70 words
        passages = chunk_text("a", body, target_words=120, max_words=160, min_words=60, overlap_sentences=0)
        assert [p.text.count("\n\n") for p in passages] == [0, 0, 0]

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"min_words": 130},
            {"target_words": 200},
            {"overlap_sentences": -1},
            {"max_words": 0, "target_words": 0, "min_words": 0},
        ],
    )
    def test_bad_kwargs(self, kwargs: dict[str, int]) -> None:
        with pytest.raises(ValueError):
            chunk_text("a", "Câu.", **kwargs)

    @settings(max_examples=examples(200))
    @given(
        st.text(alphabet=st.sampled_from(list('ab Đc.!?…\n“”"15/,')), max_size=400),
        st.integers(min_value=1, max_value=12),
        st.integers(min_value=0, max_value=3),
    )
    def test_property_cover_and_ids(self, body: str, max_words: int, overlap: int) -> None:
        target = max(1, max_words * 2 // 3)
        passages = chunk_text("doc", body, target_words=target, max_words=max_words, min_words=target // 2,
                              overlap_sentences=overlap)  # fmt: skip
        check_passages("doc", body, passages)
        assert len({p.id for p in passages}) == len(passages)
        assert all(words(p.text) <= max_words for p in passages)

    @given(st.text())
    def test_property_any_text(self, body: str) -> None:
        check_passages("doc", body, chunk_text("doc", body))


def test_long_sentence_is_not_repeated_as_overlap() -> None:
    body = make_body([100, 100, 100])
    passages = chunk_text("a", body, target_words=120, max_words=160, min_words=60, overlap_sentences=1)
    assert [len(p.sentences) for p in passages] == [1, 1, 1]
    assert all(a.end < b.start for a, b in zip(passages, passages[1:], strict=False))
