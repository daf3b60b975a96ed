"""Property tests (hypothesis) for the text pipeline as the service runs it, end to end: any Unicode in, no
exception, invariants hold. The single-function properties (normalise idempotent and clean, tokenise never
raises, chunk spans cover the text) live in tests/test_text.py and tests/test_chunking.py; here are the
compositions they do not cover, the model's own tokenizer, and the request models. Bounded to run in seconds;
`make fuzz` runs them with fifty times the examples.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from qa.chunking import chunk_article, chunk_text
from qa.corpus import ArticleError, article_from_record, parse_published_at
from qa.schemas import ArticleIn, AskRequest
from qa.text import canonical_tones, has_tone_marks, normalize, strip_accents, tokenize
from tests.conftest import examples

# Every code point, lone surrogates included.
any_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x10FFFF), max_size=300)
# What a UTF-8 request body can carry (no lone surrogates).
encodable_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
# Vietnamese-looking prose with the characters the sentence splitter cares about, long enough for many passages.
PIECES = ["Hà Nội", "quận", "đảng viên", "11.085,046", "15/6/2020", "TP.", "“Ông", "nói”", "...", "…", "!",
          "?", ". ", ".\n", "\n\n", " ", "  ", "\u00a0", "\u200b", "\x00", "ngày", "năm", "A.", "1.",
          "-", "Bí thư"]  # fmt: skip
prose = st.lists(st.sampled_from(PIECES), max_size=400).map("".join)
bodies = st.one_of(any_text, prose)
BOUNDED = settings(max_examples=examples(150), suppress_health_check=[HealthCheck.too_slow])


def _check_cover(article_id: str, body: str, passages) -> None:  # type: ignore[no-untyped-def]
    assert len({p.id for p in passages}) == len(passages)
    assert [p.id for p in passages] == [f"{article_id}:{i}" for i in range(len(passages))]
    covered: set[int] = set()
    for p in passages:
        assert body[p.start : p.end] == p.text
        covered.update(range(p.start, p.end))
    assert all(i in covered for i, char in enumerate(body) if not char.isspace())


@BOUNDED
@given(bodies)
def test_normalised_text_chunks_with_full_cover(raw: str) -> None:
    """What indexing does to any text: normalise, then chunk with the service's real sizes."""
    body = normalize(raw)
    assert normalize(body) == body
    passages = chunk_text("doc", body, target_words=120, max_words=160, min_words=60, overlap_sentences=1)
    _check_cover("doc", body, passages)
    assert all(len(p.text.split()) <= 160 for p in passages)


@BOUNDED
@given(
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x2FF, blacklist_characters="/\\"), max_size=20),
    any_text,
    bodies,
)
def test_any_record_becomes_an_article_or_a_clear_error(article_id: str, title: str, body: str) -> None:
    """article_from_record never fails with anything but ArticleError; what it accepts chunks cleanly."""
    try:
        article = article_from_record({"id": article_id, "title": title, "body": body})
    except ArticleError as exc:
        assert str(exc)
        return
    assert article.title.strip() and article.body.strip()
    _check_cover(article.id, article.body, chunk_article(article))


# Page markup and the lines a Vietnamese news page prints, mixed with any text: what a record's `html` may hold.
MARKUP = ["<p>", "</p>", "<h1>", "</h1>", "<div class='date'>", "</div>", "<script>", "</script>", "<!--", "-->",
          "<title>", "</title>", "<meta charset='windows-1258'>", "<br>", "&#0;", "&amp;", "\ufeff",
          "Thứ Ba, ngày 12/04/2019 08:15", "(TTXVN) - ", "Nguồn: TTXVN", "Tin liên quan",
          '<script type="application/ld+json">{"@type": "NewsArticle", "datePublished": "hôm qua"}</script>',
          '<meta property="article:published_time" content="2019-04-11T16:37:00+07:00">']  # fmt: skip
pages = st.lists(st.one_of(st.sampled_from(MARKUP), st.sampled_from(PIECES), any_text), max_size=40).map("".join)


@BOUNDED
@given(pages)
def test_any_page_becomes_an_article_or_a_clear_error(html: str) -> None:
    """article_from_record with `html` never fails with anything but ArticleError; what it accepts chunks cleanly."""
    try:
        article = article_from_record({"id": "page", "html": html})
    except ArticleError as exc:
        assert str(exc)
        return
    assert article.title.strip() and article.body.strip() and normalize(article.body) == article.body
    _check_cover(article.id, article.body, chunk_article(article))


@BOUNDED
@given(any_text)
def test_accent_helpers_never_raise(text: str) -> None:
    bare = strip_accents(normalize(text))
    assert not has_tone_marks(bare)
    assert strip_accents(normalize(bare)) == bare
    assert not has_tone_marks(canonical_tones(bare))
    tokenize(bare)


@BOUNDED
@given(st.one_of(any_text, st.from_regex(r"\d{1,2}/\d{1,2}/\d{4}( \d{1,2}:\d{2})?", fullmatch=True)))
def test_dates_parse_or_fail_clearly(text: str) -> None:
    try:
        value = parse_published_at(text)
    except ArticleError:
        return
    assert value is None or isinstance(value, datetime)


@BOUNDED
@given(any_text, st.integers())
def test_request_models_only_raise_validation_errors(question: str, top_k: int) -> None:
    """Any question (surrogates, controls, huge numbers): a valid request or a ValidationError (→ 422)."""
    try:
        request = AskRequest.model_validate({"question": question, "top_k": top_k})
    except ValidationError:
        return
    request.question.encode("utf-8")  # what is accepted can be encoded, indexed and echoed back
    assert 1 <= request.top_k <= 50


@BOUNDED
@given(any_text, any_text)
def test_article_model_only_raises_validation_errors(article_id: str, body: str) -> None:
    try:
        article = ArticleIn.model_validate({"id": article_id, "title": "t", "body": body})
    except ValidationError:
        return
    assert "/" not in article.id and "\\" not in article.id and " " not in article.id
    article.body.encode("utf-8")


# --- the model's tokenizer ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_tokenizer(default_model_dir: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(default_model_dir / "tokenizer.json"))


@pytest.mark.hypothesis  # drives @given from inside, over a fixture
def test_model_tokenizer_any_string(model_tokenizer) -> None:
    vocab = model_tokenizer.get_vocab_size(with_added_tokens=True)

    @BOUNDED
    @given(st.one_of(encodable_text, any_text.map(normalize), prose))
    def check(text: str) -> None:
        encoding = model_tokenizer.encode(text)
        assert all(0 <= i < vocab for i in encoding.ids)
        assert len(encoding.ids) == len(encoding.offsets)
        assert all(0 <= start <= end <= len(text) for start, end in encoding.offsets)
        passage = model_tokenizer.encode(f"passage: {text}")  # the prompt the encoder adds
        assert all(0 <= i < vocab for i in passage.ids)

    check()
