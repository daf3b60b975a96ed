"""Retrieval sanity on the shipped seeds with the real default model: the right article comes first."""

from __future__ import annotations

import pytest

from qa.text import strip_accents

# (question, article id, a string the top passage must contain)
QUESTIONS = [
    ("Quận Nam Từ Liêm có bao nhiêu đảng viên?", "002_793d685470df229a", "10.254 đảng viên"),
    ("Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?", "004_883b030afed6ad88", "Hoàng Trung Hải"),
    ("Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?", "003_0b6753d6958e9fca", "11.085,046"),
    ("Hạn hoàn thành đại hội tổ chức cơ sở Đảng là ngày nào?", "001_664a696c625e304a", "15/6"),
    ("Thành ủy Hà Nội báo cáo gì về công tác xây dựng Đảng 6 tháng đầu năm 2020?", "000_bfda8b1290abb0d5", ""),
    ("Quận Đống Đa khen thưởng bao nhiêu tổ chức cơ sở đảng?", "003_0b6753d6958e9fca", "17 tổ chức"),
]


@pytest.mark.parametrize(("question", "article_id", "needle"), QUESTIONS)
def test_right_article_first(service, question, article_id, needle):
    hits = service.retriever.search(question, top_k=3).hits
    assert hits, "no hits"
    assert hits[0].article.id == article_id, [h.article.id for h in hits]
    if needle:
        assert any(needle in h.passage.text for h in hits[:3])


def test_answer_passage_first_and_highlighted(service):
    hit = service.retriever.search("Quận Nam Từ Liêm có bao nhiêu đảng viên?", top_k=1).hits[0]
    assert "10.254 đảng viên" in hit.passage.text
    assert hit.article.title.startswith("Chủ tịch HĐND TP Hà Nội")
    (start, end), *_ = hit.highlights
    assert "10.254 đảng viên" in hit.passage.text[start:end]


def test_scores_sorted_and_bounded(service):
    hits = service.retriever.search("đại hội Đảng bộ thành phố", top_k=5).hits
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 + 1e-5 for s in scores)


def test_one_per_article(service):
    hits = service.retriever.search("đại hội Đảng", top_k=5, one_per_article=True).hits
    ids = [h.article.id for h in hits]
    assert len(ids) == len(set(ids)) == 5


def test_question_without_tone_marks_finds_the_article(service):
    question = strip_accents("Quận Nam Từ Liêm có bao nhiêu đảng viên?")
    hits = service.retriever.search(question, top_k=3).hits
    assert "002_793d685470df229a" in [h.article.id for h in hits]


@pytest.mark.parametrize(("question", "article_id", "needle"), QUESTIONS)
def test_unaccented_question_finds_the_answer_in_top_3(service, question, article_id, needle):
    hits = service.retriever.search(strip_accents(question), top_k=3).hits
    assert article_id in [h.article.id for h in hits]
    if needle:
        assert any(needle in h.passage.text for h in hits)


def test_hits_carry_both_signals(service):
    hits = service.retriever.search("Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?", top_k=5).hits
    assert all(h.dense_score is not None and h.lexical_score is not None for h in hits)
    assert hits[0].lexical_score > 0 and 0.0 <= hits[-1].score <= hits[0].score <= 1.0


def test_paging_is_consistent(service):
    question = "đại hội Đảng bộ"
    first = service.retriever.search(question, top_k=10).hits
    second = service.retriever.search(question, top_k=5, offset=5).hits
    assert [h.passage.id for h in first[5:]] == [h.passage.id for h in second]


def test_min_score_and_filters_apply_after_fusion(service):
    from qa.schemas import Filters

    question = "Quận Nam Từ Liêm có bao nhiêu đảng viên?"
    strict = service.retriever.search(question, top_k=10, min_score=0.8).hits
    assert strict and all(h.score >= 0.8 for h in strict)
    only = service.retriever.search(question, top_k=5, filters=Filters(article_ids=("003_0b6753d6958e9fca",))).hits
    assert only and {h.article.id for h in only} == {"003_0b6753d6958e9fca"}


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
def test_filters_matching_nothing_return_an_empty_result(service, mode):
    from qa.retriever import Retriever
    from qa.schemas import Filters

    retriever = Retriever(service.store, service.encoder, mode=mode)
    nothing = Filters(article_ids=("no-such-article",))
    result = retriever.search("Quận Nam Từ Liêm có bao nhiêu đảng viên?", top_k=5, filters=nothing)
    assert result.hits == [] and result.total == 0
    sources = Filters(sources=("no-such-source",))
    # Nothing found, but the question without tone marks was still understood (from the whole corpus's counts).
    assert retriever.search_many(["đảng viên", "dang vien"], filters=sources) == [
        type(result)([], 0),
        type(result)([], 0, understood_as="đảng viên"),
    ]


def test_chairman_of_programme_01_is_highlighted_in_the_top_5(service):
    """tests/web relies on this card: the 004 article's passage with "Hoàng Trung Hải" highlighted."""
    hits = service.retriever.search("Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?", top_k=5).hits
    card = next(h for h in hits if h.article.id == "004_883b030afed6ad88" and "Hoàng Trung Hải" in h.passage.text)
    assert any("Hoàng Trung Hải" in card.passage.text[a:b] for a, b in card.highlights)


def test_fusion_handles_an_empty_pool():
    from qa.retriever import Fusion, fuse

    assert fuse({}, {}, set(), Fusion()) == []
    assert fuse({1: 0.5}, {}, set(), Fusion()) == []


def test_a_passage_deleted_before_lookup_makes_room_for_the_next(service, monkeypatch):
    import qa.retriever

    monkeypatch.setattr(qa.retriever, "RERANK_WEIGHT", 0.0)  # the fused order, which the top hits' answers move
    question = "Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?"
    full = service.retriever.search(question, top_k=4)
    store = service.retriever.store
    original = store.passages_by_key
    gone = full.hits[0].passage.id
    monkeypatch.setattr(
        store, "passages_by_key", lambda keys: {k: r for k, r in original(keys).items() if r.passage.id != gone}
    )
    result = service.retriever.search(question, top_k=3)
    assert [h.passage.id for h in result.hits] == [h.passage.id for h in full.hits[1:4]]
    assert result.total == full.total - 1


def test_a_question_reads_each_thing_from_the_store_once(service, monkeypatch):
    """Filters resolve once, sentence vectors read to rank serve the highlights too, records come in one round."""
    from collections import Counter

    from qa.schemas import Filters

    store = service.retriever.store
    calls: Counter[str] = Counter()
    names = ("keys_matching", "search", "search_lexical", "lexical_scores", "dense_scores", "sentence_vectors")
    names += ("passages_by_key",)
    for name in names:
        original = getattr(store, name)

        def counted(*args, _name=name, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            calls[_name] += 1
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, counted)
    filters = Filters(sources=["ANTD.VN", "HNP", "LĐTĐ"])
    hits = service.retriever.search("Ai chủ trì cuộc họp Ban chỉ đạo Chương trình 01?", top_k=5, filters=filters).hits
    assert hits and all(h.highlights for h in hits[:1])
    assert calls == dict.fromkeys(names, 1), calls


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        (
            "hybrid",
            ["restore", "encode", "search", "dense", "search_lexical", "lexical", "passages_by_key", "hydrate"]
            + ["answer"],
        ),
        ("dense", ["restore", "encode", "search", "dense", "passages_by_key", "hydrate", "answer"]),
        ("lexical", ["restore", "search_lexical", "lexical", "passages_by_key", "hydrate", "answer"]),
    ],
)
def test_each_stage_is_reported_once_around_its_own_work(service, monkeypatch, mode, expected):
    """A search reports each stage of its mode once (a batch's questions together), after the store call it
    times and before the next stage's: the log interleaves the observer's reports with those store calls."""
    from qa.retriever import Retriever

    log: list[str] = []
    seconds: list[float] = []

    class Recorder:
        def observe(self, stage: str, took: float) -> None:
            log.append(stage)
            seconds.append(took)

    store = service.store
    for name in ("search", "search_lexical", "passages_by_key"):
        original = getattr(store, name)

        def logged(*args, _name=name, _original=original, **kwargs):  # type: ignore[no-untyped-def]
            log.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(store, name, logged)
    retriever = Retriever(store, service.encoder, mode=mode)
    results = retriever.search_many(["Quận Nam Từ Liêm có bao nhiêu đảng viên?", "dang vien"], stages=Recorder())
    assert all(r.hits for r in results)
    # One lexical search per question: both inside the lexical stage.
    per_question = [e for n in expected for e in ([n, n] if n == "search_lexical" else [n])]
    assert log == per_question
    assert all(s >= 0 for s in seconds)


def test_observing_the_stages_leaves_the_results_as_they_are(service):
    """With or without `stages` (the CLI, benchmarks and evals pass none), a search finds the same hits."""
    from qa.timing import STAGES

    question = "Quận Đống Đa thu ngân sách năm 2020 được bao nhiêu?"
    reports: list[str] = []

    class Recorder:
        def observe(self, stage: str, took: float) -> None:
            reports.append(stage)

    plain = service.retriever.search(question, top_k=3)
    observed = service.retriever.search_many([question], 3, stages=Recorder())[0]
    assert [h.passage.id for h in observed.hits] == [h.passage.id for h in plain.hits]
    assert sorted(reports) == sorted(STAGES)
