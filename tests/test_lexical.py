"""The lexical index: Vietnamese terms, the accent-free field, parity with textbook BM25, sync with the store."""

from __future__ import annotations

import math
import threading
from collections import Counter
from datetime import datetime

import numpy as np
import pytest

from qa.chunking import chunk_text
from qa.derived import PassageRow
from qa.domain import Article
from qa.indexing import Indexer
from qa.lexical import K1, B, LexicalIndex
from qa.lexical.analysis import PHRASE_WEIGHT, analyze, bigrams_of
from qa.lexical.tantivy import TantivyIndex
from qa.query import Query
from qa.schemas import Filters
from qa.store import Store
from tests.fakes import HashingEncoder

DOCS = {
    1: "Đường Láng ở quận Đống Đa được mở rộng năm 2020.",
    2: "Dương Văn Minh là tổng thống cuối cùng.",
    3: "Quận Nam Từ Liêm có 10.254 đảng viên, chiếm 92% kế hoạch.",
    4: "Ý kiến cử tri về giá điện được gửi tới Quốc hội ngày 15/6/2020.",
    5: "Hoà bình và thuỷ lợi là chủ đề của hội nghị.",
}


NO_VECTOR = np.empty(0, dtype=np.float32)


def rows(docs: dict[int, str]) -> list[PassageRow]:
    return [PassageRow(key, text, NO_VECTOR) for key, text in docs.items()]


@pytest.fixture
def index(tmp_path) -> LexicalIndex:
    lexical = TantivyIndex.create(tmp_path / "lexical")
    lexical.apply([], rows(DOCS))
    return lexical


def top(index: LexicalIndex, question: str, allowed: np.ndarray | None = None) -> list[int]:
    return index.search(Query.parse(question), 10, allowed).keys.tolist()


def test_analyze_keeps_one_letter_syllables_numbers_and_adds_bigrams():
    terms = analyze("Ý kiến ở 10.254 hộ", folded=False, bigrams=True)
    assert terms[:5] == ["ý", "kiến", "ở", "10.254", "hộ"]
    assert "ý_kiến" in terms and "10.254_hộ" in terms
    assert analyze("Đường Láng", folded=True, bigrams=False) == ["duong", "lang"]
    assert not any(" " in t for t in analyze("Hà Nội, 15/6/2020: 92% cử tri", folded=True, bigrams=True))


def test_one_letter_syllable_and_number_tokens_match(index):
    assert top(index, "ý")[0] == 4
    assert top(index, "10.254")[0] == 3
    assert top(index, "15/6/2020") == [4]
    assert top(index, "92%") == [3]


def test_accented_question_keeps_marks_apart(index):
    assert top(index, "đường") == [1]
    assert top(index, "dương") == [2]


def test_question_without_marks_uses_accent_free_field(index):
    assert set(top(index, "duong")) == {1, 2}
    assert top(index, "quan nam tu liem co bao nhieu dang vien")[0] == 3
    # English (no marks either) is matched the same way.
    assert top(index, "Minh")[0] == 2


def test_tone_placement_conventions_meet(index):
    assert top(index, "hòa bình thủy lợi")[0] == 5


def test_allowed_filter(index):
    assert top(index, "quận", allowed=np.array([3])) == [3]
    assert top(index, "quận", allowed=np.array([], dtype=np.int64)) == []


def test_replace_and_remove(index):
    index.apply([3], rows({6: "Một văn bản khác hẳn."}))
    assert 3 not in top(index, "đảng viên")
    index.apply([1, 2], [])
    assert top(index, "duong") == []
    assert len(index) == 3


def test_phrase_field_prefers_the_word_over_scattered_syllables(tmp_path):
    lexical = TantivyIndex.create(tmp_path / "lexical")
    lexical.apply([], rows({1: "Ngân hàng nhà nước công bố lãi suất.", 2: "Nhà hàng bên sông, ngân sách nước."}))
    assert top(lexical, "ngân hàng nhà nước")[0] == 1


def _reference_bm25(docs: dict[int, list[str]], query: list[str]) -> dict[int, float]:
    """Textbook BM25 (Lucene idf), the slow way."""
    n = len(docs)
    avg = sum(map(len, docs.values())) / n
    scores = dict.fromkeys(docs, 0.0)
    for term in set(query):
        df = sum(term in terms for terms in docs.values())
        if not df:
            continue
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for key, terms in docs.items():
            tf = Counter(terms)[term]
            scores[key] += idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * len(terms) / avg))
    return {k: s for k, s in scores.items() if s > 0}


@pytest.mark.parametrize("question", ["quận Đống Đa", "đảng viên quận", "hội nghị hoà bình", "duong lang"])
def test_parity_with_reference_bm25(tmp_path, question):
    """The engine's scores are textbook BM25 over the project's terms (document lengths are short enough here for
    the engine's one-byte length quantisation to be exact)."""
    lexical = TantivyIndex.create(tmp_path / "lexical")
    lexical.apply([], rows(DOCS))
    folded = question.isascii()
    expected = _reference_bm25(
        {k: analyze(v, folded=folded, bigrams=folded) for k, v in DOCS.items()},
        analyze(question, folded=folded, bigrams=folded),
    )
    if not folded:  # accented: + PHRASE_WEIGHT * BM25 over the syllable-bigram field
        phrases = _reference_bm25(
            {k: bigrams_of(analyze(v, folded=False)) for k, v in DOCS.items()},
            bigrams_of(analyze(question, folded=False)),
        )
        for key, score in phrases.items():
            expected[key] = expected.get(key, 0.0) + PHRASE_WEIGHT * score
    hits = lexical.search(Query.parse(question), 10)
    got = dict(zip(hits.keys.tolist(), hits.scores.tolist(), strict=True))
    assert got.keys() == expected.keys()
    for key, score in expected.items():
        assert got[key] == pytest.approx(score, rel=1e-4)


def test_scores_below_bound(index):
    hits = index.search(Query.parse("quận Nam Từ Liêm có bao nhiêu đảng viên"), 10)
    assert 0 < hits.scores[0] < hits.bound


def test_scores_for_given_keys_agree_with_the_search(index):
    index.apply([], rows({6: "Quận Đống Đa, quận Đống Đa.", 7: "Quận Đống Đa có hội nghị."}))
    query = Query.parse("quận Đống Đa hội nghị")
    hits = index.search(query, 10)
    full = dict(zip(hits.keys.tolist(), hits.scores.tolist(), strict=True))
    assert index.scores_for(query, [7, 2, 999, 6]).tolist() == pytest.approx([full[7], 0.0, 0.0, full[6]])
    assert index.search(query, 2).keys.tolist() == hits.keys[:2].tolist()


def test_concurrent_reads_and_writes(index):
    errors: list[BaseException] = []

    def writer() -> None:
        for i in range(100, 160):
            index.apply([i - 1] if i % 3 == 0 else [], rows({i: f"Bài {i} về quận Đống Đa."}))

    def reader() -> None:
        try:
            for _ in range(200):
                assert 3 in top(index, "đảng viên")
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


# --- kept in sync with the store ---------------------------------------------------------------------

ENC = HashingEncoder()
CHUNKING = {"target_words": 20, "max_words": 30, "min_words": 5, "overlap_sentences": 1}


def article(article_id: str, body: str, title: str = "") -> Article:
    return Article(article_id, title, body, datetime(2021, 1, 1), "src", None, fingerprint=f"{article_id}{body}")


def lexical_articles(store: Store, question: str, **kw) -> list[str]:
    keys = store.search_lexical(Query.parse(question), 10, **kw).keys.tolist()
    return [r.article.id for k in keys if (r := store.passages_by_key([k]).get(k))]


def test_store_writes_and_reopen_keep_lexical_in_sync(tmp_path):
    store = Store.create(tmp_path / "idx", model=ENC.name, dim=ENC.dim, chunking=CHUNKING)
    indexer = Indexer(store, ENC, chunking=CHUNKING)
    indexer.add([article("a", DOCS[1]), article("b", DOCS[3], title="Nam Từ Liêm")], origin="api")
    assert lexical_articles(store, "Đống Đa") == ["a"]
    assert lexical_articles(store, "nam tu liem")[0] == "b"  # title and accent-free field ("năm" in a)
    indexer.add([article("a", "Một nội dung mới về giao thông.")], origin="api")
    assert lexical_articles(store, "Đống Đa") == []
    assert lexical_articles(store, "giao thông") == ["a"]
    indexer.delete(["a"])
    assert lexical_articles(store, "giao thông") == []
    assert lexical_articles(store, "đảng viên", scope=store.scope(Filters(article_ids=["b"]))) == ["b"]
    passages = chunk_text("c", DOCS[4], **CHUNKING)
    store.upsert([(article("c", DOCS[4]), passages, ENC.encode_passages([p.text for p in passages]))], origin="file")
    assert lexical_articles(store, "cử tri") == ["c"]
    store.close()
    reopened = Store.open(tmp_path / "idx")
    assert len(reopened.lexical) == reopened.manifest().passages
    assert lexical_articles(reopened, "cử tri") == ["c"]
    assert lexical_articles(reopened, "giao thông") == []
    reopened.close()


def test_a_second_writer_waits_for_the_first(tmp_path):
    """Two processes' stores on one folder (a `qa index` beside `qa serve`): tantivy allows one writer at a time, so a
    write waits for the other's commit instead of failing."""
    first = TantivyIndex.create(tmp_path / "lexical")
    first.apply([], rows({1: "Hà Nội"}))
    first.save(1)
    second = TantivyIndex.open(tmp_path / "lexical")
    assert second is not None
    held = first._index.writer(heap_size=15_000_000, num_threads=1)  # the other process, mid-commit
    refused = threading.Event()

    class Watched:  # the second index's tantivy handle, noting when it was refused the writer
        def __init__(self, index):  # type: ignore[no-untyped-def]
            self._index = index

        def __getattr__(self, name):  # type: ignore[no-untyped-def]
            return getattr(self._index, name)

        def writer(self, **kwargs):  # type: ignore[no-untyped-def]
            try:
                return self._index.writer(**kwargs)
            except ValueError:
                refused.set()
                raise

    second._index = Watched(second._index)
    errors: list[BaseException] = []

    def write() -> None:
        try:
            second.apply([], rows({2: "Đà Nẵng"}))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    writing = threading.Thread(target=write)
    writing.start()
    assert refused.wait(timeout=60), "the second writer was never refused: the test did not hold the lock"
    held.commit()
    held.wait_merging_threads()  # releases the lock
    writing.join()
    assert not errors
    assert top(second, "Đà Nẵng") == [2]
