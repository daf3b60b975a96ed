"""Sentence vectors: stored at index time, ranked on (best sentence) and used for highlighting."""

from __future__ import annotations

import numpy as np
import pytest

from qa.domain import encoder_input, sentence_inputs
from qa.indexing import Indexer
from qa.retriever import ANSWER_HITS, Fusion, Retriever, fuse
from qa.store import Store
from tests.fakes import HashingEncoder
from tests.test_store import BODY_A, BODY_B, CHUNKING, ENC, item, make_article, rows

pytestmark = pytest.mark.every_database


class CountingEncoder(HashingEncoder):
    """Records every passage text it is asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.passage_texts: list[str] = []

    def encode_passages(self, texts, *, batch_size=32, show_progress=False):
        self.passage_texts.extend(texts)
        return super().encode_passages(texts, batch_size=batch_size)


def sentence_item(article):
    article, passages, vectors = item(article)
    return (article, passages, vectors), [ENC.encode_passages(sentence_inputs(article.title, p)) for p in passages]


def test_round_trip_by_key_and_by_passage_id(store, tmp_path, database_url):
    (a, sa), (b, sb) = sentence_item(make_article("a", BODY_A)), sentence_item(make_article("b", BODY_B))
    titles = ENC.encode_passages([a[0].title, "Another title"])
    store.upsert([a, b], origin="seed", sentence_vectors=[sa, sb])
    assert not store.has_sentence_vectors()  # no title vectors: an index built before titles had them
    store.upsert([a, b], origin="seed", sentence_vectors=[sa, sb], title_vectors=list(titles))
    assert store.has_sentence_vectors()
    store.close()
    store = Store.open(tmp_path / "idx", database_url=database_url)
    keys = [r[0] for r in rows(store, "SELECT key FROM passages ORDER BY key")]
    by_key = store.sentence_vectors(keys=keys)
    expected = [v for per_article in (sa, sb) for v in per_article]
    assert len(by_key) == len(keys) == len(expected)
    for key, want in zip(keys, expected, strict=True):
        assert by_key[key].dtype == np.float32 and by_key[key].shape == want.shape
        np.testing.assert_allclose(by_key[key], want, atol=1e-3)  # stored as float16
    by_id = store.sentence_vectors(passage_ids=[p.id for p in a[1]])
    assert set(by_id) == {p.id for p in a[1]}
    np.testing.assert_allclose(by_id[a[1][0].id], sa[0], atol=1e-3)
    by_article = store.title_vectors(["a", "b", "a", "missing"])
    assert sorted(by_article) == ["a", "b"] and by_article["a"].dtype == np.float32
    np.testing.assert_allclose(by_article["b"], titles[1], atol=1e-3)
    store.delete(["a"])
    assert sorted(store.title_vectors(["a", "b"])) == ["b"]
    with pytest.raises(ValueError, match="title vector"):
        store.upsert([b], origin="seed", sentence_vectors=[sb], title_vectors=[])
    store.close()


def test_replaced_and_deleted_articles_take_their_sentence_vectors_along(store):
    (a, sa) = sentence_item(make_article("a", BODY_A))
    store.upsert([a], origin="seed", sentence_vectors=[sa])
    old_keys = [r[0] for r in rows(store, "SELECT key FROM passages")]
    (a2, sa2) = sentence_item(make_article("a", BODY_B))
    store.upsert([a2], origin="seed", sentence_vectors=[sa2])
    assert store.sentence_vectors(keys=old_keys) == {}
    assert len(store.sentence_vectors(passage_ids=[p.id for p in a2[1]])) == len(a2[1])
    store.delete(["a"])
    assert not store.has_sentence_vectors()


def test_an_article_without_passages_next_to_one_with_them(store):
    empty = (make_article("e", "x"), [], np.zeros((0, ENC.dim), np.float32))
    (b, sb) = sentence_item(make_article("b", BODY_B))
    store.upsert([empty, b], origin="seed", sentence_vectors=[[], sb])
    keys = [r[0] for r in rows(store, "SELECT key FROM passages ORDER BY key")]
    assert sorted(store.sentence_vectors(keys=keys)) == keys


def test_mismatched_sentence_vectors_are_refused(store):
    (a, sa) = sentence_item(make_article("a", BODY_A))
    with pytest.raises(ValueError, match="sentence vectors"):
        store.upsert([a], origin="seed", sentence_vectors=[[v[:-1] for v in sa]])
    with pytest.raises(ValueError, match="sentence vectors"):
        store.upsert([a], origin="seed", sentence_vectors=[])
    assert store.manifest().articles == 0, "nothing is written when the input is refused"


@pytest.mark.parametrize("enabled", [True, False])
def test_indexer_stores_one_vector_per_sentence_and_title_when_enabled(store, enabled):
    encoder = CountingEncoder()
    article = make_article("a", BODY_A + BODY_B)
    indexer = Indexer(store, encoder, chunking=CHUNKING, sentence_vectors=enabled)
    indexer.add([article], origin="seed")
    passages = store.passages_of("a")
    stored = store.sentence_vectors(passage_ids=[p.id for p in passages])
    if not enabled:
        assert stored == {} and not store.has_sentence_vectors()
        # each passage once (two passages of the same text, once between them)
        assert sorted(encoder.passage_texts) == sorted({encoder_input(article.title, p.text) for p in passages})
        return
    for p in passages:
        want = HashingEncoder().encode_passages(sentence_inputs(article.title, p))
        np.testing.assert_allclose(stored[p.id], want, atol=1e-3)
    np.testing.assert_allclose(
        store.title_vectors(["a"])["a"], HashingEncoder().encode_passages([article.title])[0], atol=1e-3
    )
    # each passage, each sentence and the title, once: a sentence two passages share (the overlap) is encoded for
    # both at once
    sentences = [s for p in passages for s in sentence_inputs(article.title, p)]
    assert len(set(sentences)) < len(sentences), "the chunking overlaps passages by a sentence"
    wanted = {*(encoder_input(article.title, p.text) for p in passages), *sentences, article.title}
    assert sorted(encoder.passage_texts) == sorted(wanted)


def retriever_over(store, encoder, *, sentence_vectors: bool, **options) -> Retriever:
    articles = [make_article("a", BODY_A), make_article("b", BODY_B)]
    Indexer(store, HashingEncoder(), chunking=CHUNKING, sentence_vectors=sentence_vectors).add(articles, origin="s")
    return Retriever(store, encoder, **options)


def test_highlights_use_the_stored_vectors_instead_of_encoding(store):
    encoder = CountingEncoder()
    retriever = retriever_over(store, encoder, sentence_vectors=True)
    hits = retriever.search("Đảng bộ quận Nam Từ Liêm có bao nhiêu đảng viên?", top_k=3).hits
    assert hits and hits[0].highlights
    assert "10.254" in hits[0].passage.text[slice(*hits[0].highlights[0])]
    assert encoder.passage_texts == [], "no sentence was encoded at question time"


def test_without_stored_vectors_highlights_encode_the_sentences(store):
    encoder = CountingEncoder()
    retriever = retriever_over(store, encoder, sentence_vectors=False)
    hits = retriever.search("Đảng bộ quận Nam Từ Liêm có bao nhiêu đảng viên?", top_k=3).hits
    assert hits and hits[0].highlights
    assert encoder.passage_texts == sentence_inputs(hits[0].article.title, hits[0].passage)


def test_stored_and_encoded_sentence_vectors_give_the_top_hit_the_same_cosines(tmp_path, monkeypatch):
    question = "Quận Đống Đa đạt bao nhiêu phần trăm dự toán?"
    seen = []
    for enabled in (True, False):
        store = Store.create(tmp_path / str(enabled), model=ENC.name, dim=ENC.dim, chunking=CHUNKING)
        retriever = retriever_over(store, HashingEncoder(), sentence_vectors=enabled)
        select = retriever.answers.select

        def recording(query, evidence, idf, select=select):
            seen.append((evidence[0].passage.id, evidence[0].sentence_cosines))
            return select(query, evidence, idf)

        monkeypatch.setattr(retriever.answers, "select", recording)
        retriever.search(question, top_k=3)
        monkeypatch.undo()  # the shipped model is one object: unwrap it before the next round
        store.close()
    (stored_id, stored), (encoded_id, encoded) = seen
    assert stored_id == encoded_id and stored is not None and encoded is not None
    np.testing.assert_allclose(stored, encoded, atol=2e-3)  # stored as float16


@pytest.mark.parametrize("enabled", [True, False])
def test_the_model_scores_every_hit_with_stored_vectors_and_only_the_top_one_otherwise(store, monkeypatch, enabled):
    retriever = retriever_over(store, HashingEncoder(), sentence_vectors=enabled)
    seen: list[bool] = []
    select = retriever.answers.select

    def recording(query, evidence, idf):
        seen.extend(e.sentence_cosines is not None for e in evidence)
        return select(query, evidence, idf)

    monkeypatch.setattr(retriever.answers, "select", recording)
    hits = retriever.search("Đảng bộ quận Nam Từ Liêm có bao nhiêu đảng viên?", top_k=4).hits
    assert len(hits) == 4 and len(seen) == ANSWER_HITS  # the answer is chosen among the top 5
    assert seen == ([True] * ANSWER_HITS if enabled else [True] + [False] * (ANSWER_HITS - 1))


def test_the_best_sentence_breaks_a_tie_between_passages():
    dense = {1: 0.8, 2: 0.8, 3: 0.2}
    lexical = {1: 3.0, 2: 3.0, 3: 0.0}
    sentence = {1: 0.5, 2: 0.9, 3: 0.1}
    ranked = fuse(dense, lexical, {1, 2, 3}, Fusion(), 0.5, sentence)
    assert [c.key for c in ranked] == [2, 1, 3]
    assert ranked[0].score == 1.0 and ranked[0].dense_score == pytest.approx(0.8)
    assert [c.key for c in fuse(dense, lexical, {1, 2, 3}, Fusion(sentence_weight=0.0), 0.5, sentence)] == [1, 2, 3]
    assert [c.key for c in fuse(dense, lexical, {1, 2, 3}, Fusion(), 0.5, None)] == [1, 2, 3]


def test_a_mixed_index_ranks_without_the_sentence_signal(store):
    """Passages indexed before sentence vectors existed (or with them off) turn the signal off, not a crash."""
    retriever = retriever_over(store, HashingEncoder(), sentence_vectors=True)
    Indexer(store, HashingEncoder(), chunking=CHUNKING, sentence_vectors=False).add(
        [make_article("c", "Đảng bộ quận Nam Từ Liêm tổ chức đại hội. " * 4)], origin="s"
    )
    keys = [r[0] for r in rows(store, "SELECT key FROM passages")]
    assert retriever._stored_sentences(dict.fromkeys(keys, 0.0)) is None
    with_vectors = [k for k in keys if k in store.sentence_vectors(keys=keys)]
    stored = retriever._stored_sentences(dict.fromkeys(with_vectors, 0.0))
    assert stored is not None and set(stored) == set(with_vectors)
    assert retriever.search("Nam Từ Liêm có bao nhiêu đảng viên?", top_k=3).hits


def test_sentence_weight_is_validated():
    with pytest.raises(ValueError, match="sentence_weight"):
        Fusion(sentence_weight=1.5)
