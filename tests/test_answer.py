"""Answer-sentence selection (`qa.answer`): what a question asks for, the candidates and their features, the choice."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from qa.answer import (
    CALIBRATION_INPUTS,
    CLASSES,
    FEATURES,
    KINDS,
    AnswerModel,
    Evidence,
    calibration_inputs,
    features,
    question_class,
    question_kind,
)
from qa.domain import Passage
from qa.query import Query
from qa.text import strip_accents

TEXT = (
    "Hội nghị diễn ra sáng nay tại Hà Nội. "
    "Đồng chí Hoàng Trung Hải chủ trì cuộc họp. "
    "Các đại biểu thảo luận về kế hoạch của quận."
)


def passage(text: str = TEXT, article_id: str = "a", ordinal: int = 0) -> Passage:
    spans, start = [], 0
    for part in text.split(". "):
        end = start + len(part) + (1 if not part.endswith(".") else 0)
        spans.append((start, min(end, len(text))))
        start = end + 1
    return Passage(f"{article_id}:{ordinal}", article_id, ordinal, text, 0, len(text), tuple(spans))


def flat_idf(terms, folded):
    return [1.0] * len(terms)


def column(name: str) -> int:
    return FEATURES.index(name)


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Quận Nam Từ Liêm có bao nhiêu đảng viên?", "number"),
        ("Có mấy tổ chức cơ sở đảng?", "number"),
        ("Đại hội diễn ra khi nào?", "time"),
        ("Năm nào Apollo 11 hạ cánh?", "time"),
        ("Hạn hoàn thành là ngày nào?", "time"),
        ("Ai chủ trì cuộc họp?", "person"),
        ("Hội nghị tổ chức ở đâu?", "place"),
        ("Quốc gia nào giành huy chương vàng?", "place"),
        ("Công ty nào khôi phục các băng gốc?", "name"),
        ("Thành ủy báo cáo gì?", None),
        ("Tại sao dự án bị chậm?", None),
        ("ai chu tri cuoc hop?", "person"),
        ("quan nam tu liem co bao nhieu dang vien", "number"),
        ("dai hoi dien ra khi nao", "time"),
        ("How many points did the Panthers defense surrender?", "number"),
        ("When did the meeting take place?", "time"),
        ("Who chaired the meeting?", "person"),
        ("Where is the headquarters?", "place"),
        ("What did the report say?", None),
    ],
)
def test_what_a_question_asks_for(question, kind):
    assert question_kind(Query.parse(question)) == kind


def test_an_ambiguous_syllable_without_tone_marks_asks_for_nothing():
    # "may" is "mấy" (how many) but also "máy" (machine); "dau" is "đâu" but also "đầu" (first).
    assert question_kind(Query.parse("may tinh dau tien")) is None
    assert question_kind(Query.parse("máy tính đầu tiên")) is None


def test_every_kind_has_a_feature():
    assert set(KINDS) <= set(FEATURES)


def test_candidates_are_the_sentences_then_the_title_and_overlaps_count_once():
    first = passage()
    second = passage("Đồng chí Hoàng Trung Hải chủ trì cuộc họp. Hội nghị kết thúc lúc 11 giờ.", ordinal=1)
    evidence = [Evidence(first, "Hội nghị Ban chỉ đạo", 1.0), Evidence(second, "Hội nghị Ban chỉ đạo", 0.8)]
    candidates, x = features(Query.parse("Ai chủ trì cuộc họp?"), evidence, flat_idf)
    texts = [c.text for c in candidates]
    assert texts == [
        "Hội nghị diễn ra sáng nay tại Hà Nội.",
        "Đồng chí Hoàng Trung Hải chủ trì cuộc họp.",
        "Các đại biểu thảo luận về kế hoạch của quận.",
        "Hội nghị Ban chỉ đạo",
        "Hội nghị kết thúc lúc 11 giờ.",  # the shared sentence and the same title are not repeated
    ]
    assert [c.span is None for c in candidates] == [False, False, False, True, False]
    assert x.shape == (5, len(FEATURES))
    assert x[:, column("first")].tolist() == [1, 1, 1, 1, 0]
    assert x[:, column("passage")].tolist() == [1.0, 1.0, 1.0, 1.0, 0.8]


def test_coverage_pairs_and_kind_of_the_answering_sentence():
    candidates, x = features(Query.parse("Ai chủ trì cuộc họp?"), [Evidence(passage(), "", 1.0)], flat_idf)
    chaired = [c.text for c in candidates].index("Đồng chí Hoàng Trung Hải chủ trì cuộc họp.")
    # content words "chủ trì cuộc họp": all four held, and the pairs ("chủ", "trì"), ("trì", "cuộc"), ("cuộc", "họp")
    assert x[chaired, column("coverage")] == 1.0
    assert x[chaired, column("pairs")] == pytest.approx(3 / 4)  # of the question's 4 adjacent pairs
    assert x[chaired, column("person")] == 1.0
    other = 2  # "Các đại biểu thảo luận ...": no name
    assert x[other, column("person")] == 0.0
    # only the kind asked for is filled: another kind's column says nothing of this question
    assert x[:, [column(k) for k in KINDS if k != "person"]].sum() == 0


def test_a_number_the_question_already_holds_is_not_an_answer():
    p = passage("Quận có 38 tổ chức cơ sở. Quận Nam Từ Liêm có 10.254 đảng viên.")
    _, x = features(Query.parse("Trong 38 tổ chức có bao nhiêu đảng viên?"), [Evidence(p, "", 1.0)], flat_idf)
    assert x[:, column("number")].tolist() == [0.0, 1.0]


def test_an_unaccented_question_reads_the_folded_words():
    cosines = np.array([0.1, 0.9, 0.2])
    evidence = [Evidence(passage(), "", 1.0, cosines)]
    _, accented = features(Query.parse("Ai chủ trì cuộc họp?"), evidence, flat_idf)
    _, folded = features(Query.parse(strip_accents("Ai chủ trì cuộc họp?")), evidence, flat_idf)
    assert accented[1, column("coverage")] == folded[1, column("coverage")] == 1.0
    np.testing.assert_allclose(folded[:, column("cosine")], accented[:, column("cosine")])
    assert accented[1, column("cosine")] == max(accented[:, column("cosine")])


def test_a_foreign_question_meets_the_names_and_numbers_it_shares():
    p = passage("Kawann Short dẫn đầu đội với 11 lần. Đội thủ của Panthers chỉ thua 308 điểm.")
    question = Query.parse("How many points did the Panthers defense surrender?")
    _, x = features(question, [Evidence(p, "", 1.0)], flat_idf)
    assert x[0, column("coverage")] == 0.0 and x[1, column("coverage")] > 0
    assert x[1, column("number")] == 1.0


@pytest.mark.parametrize(
    ("question", "name"),
    [("Ai chủ trì cuộc họp?", "accented"), ("ai chu tri cuoc hop", "unaccented"), ("Who chaired it?", "foreign")],
)
def test_question_classes(question, name):
    assert question_class(Query.parse(question)) == name


def test_a_person_is_a_name_led_by_a_family_name_or_a_title_or_spelled_foreign():
    text = (
        "Ban Chỉ đạo Chương trình 01 họp tại Thành ủy. Bí thư Hoàng Trung Hải chủ trì. "
        "Sau đó ông Thao phát biểu. Kawann Short dẫn đầu."
    )
    _, x = features(Query.parse("Ai chủ trì?"), [Evidence(passage(text), "", 1.0)], flat_idf)
    assert x[:4, column("person")].tolist() == [0.0, 1.0, 1.0, 1.0]


def model(**weights: float) -> AnswerModel:
    calibration = {"intercept": 0.0, "utility": 1.0, "lead": 0.0, "similarity": 0.0, "coverage": 0.0}
    per_class = {f: weights.get(f, 0.0) for f in FEATURES}
    return AnswerModel(dict.fromkeys(CLASSES, per_class), dict.fromkeys(CLASSES, calibration), threshold=0.5)


def test_select_picks_the_best_candidate_across_hits_and_highlights_each_hit():
    a = passage()
    b = passage("Hội nghị kết thúc sớm. Đồng chí Hoàng Trung Hải chủ trì cuộc họp thường kỳ.", article_id="b")
    evidence = [Evidence(a, "", 1.0, np.array([0.9, 0.1, 0.1])), Evidence(b, "", 0.5, np.array([0.1, 0.2]))]
    chosen = model(coverage=5.0).select(Query.parse("Ai chủ trì cuộc họp?"), evidence, flat_idf)
    assert chosen.answer is not None and chosen.answer.hit == 0
    assert chosen.answer.text == "Đồng chí Hoàng Trung Hải chủ trì cuộc họp." and chosen.answer.span == a.sentences[1]
    assert chosen.highlights == [a.sentences[1], b.sentences[1]]
    by_cosine = model(cosine=5.0).select(Query.parse("Ai chủ trì cuộc họp?"), evidence, flat_idf)
    assert by_cosine.highlights[0] == a.sentences[0]


def test_the_title_can_be_the_answer():
    p = passage("Chiếc điện thoại mới có màn hình lớn. Máy bán ra từ tuần sau.")
    title = "iPhone X giá 1,3 tỷ đồng"
    chosen = model(coverage=2.0, number=3.0).select(
        Query.parse("iPhone X giá bao nhiêu?"), [Evidence(p, title, 1.0)], flat_idf
    )
    assert chosen.answer is not None and chosen.answer.span is None and chosen.answer.text == title
    assert chosen.highlights[0] in p.sentences  # a hit's highlight is always one of its sentences


def test_below_the_threshold_there_is_no_answer_but_highlights_remain():
    evidence = [Evidence(passage(), "", 1.0)]
    sure = model(coverage=10.0).select(Query.parse("Ai chủ trì cuộc họp?"), evidence, flat_idf)
    doubtful = model(coverage=10.0)
    doubtful.calibration["accented"]["intercept"] = -20.0  # the same choice, judged likelier wrong than right
    unsure = doubtful.select(Query.parse("Ai chủ trì cuộc họp?"), evidence, flat_idf)
    assert sure.answer is not None and sure.answer.score > 0.99
    assert unsure.answer is None and unsure.highlights[0] in passage().sentences


def test_no_evidence_no_answer():
    chosen = AnswerModel.shipped().select(Query.parse("Ai chủ trì cuộc họp?"), [], flat_idf)
    assert chosen.answer is None and chosen.highlights == []


def test_calibration_inputs_read_the_best_candidate_and_cap_its_lead():
    x = np.zeros((3, len(FEATURES)))
    x[:, column("similarity")] = [0.8, 0.7, 0.9]
    x[:, column("coverage")] = [0.5, 0.0, 1.0]
    inputs = calibration_inputs(x, np.array([9.0, 1.0, 8.5]))
    assert inputs == {"intercept": 1.0, "utility": 9.0, "lead": 0.5, "similarity": 0.8, "coverage": 0.5}
    assert calibration_inputs(x[:2], np.array([9.0, 1.0]))["lead"] == 3.0
    assert calibration_inputs(x[:1], np.array([2.0]))["lead"] == 3.0
    assert tuple(inputs) == CALIBRATION_INPUTS


def test_the_shipped_model_names_every_feature_and_its_provenance():
    data = json.loads(resources.files("qa").joinpath("answer_model.json").read_text(encoding="utf-8"))
    assert list(data["weights"]) == list(CLASSES) == list(data["calibration"])
    assert all(list(data["weights"][name]) == list(FEATURES) for name in CLASSES)
    assert all(tuple(data["calibration"][name]) == CALIBRATION_INPUTS for name in CLASSES)
    assert "CC BY-SA" in data["about"] and "benchmarks/fit_answer.py" in data["about"]
    assert 0.0 < data["threshold"] < 1.0
    shipped = AnswerModel.shipped()
    assert shipped.weights["foreign"].tolist() == [data["weights"]["foreign"][f] for f in FEATURES]


def test_a_model_missing_a_weight_is_refused():
    calibration = dict.fromkeys(CLASSES, dict.fromkeys(CALIBRATION_INPUTS, 0.0))
    with pytest.raises(ValueError, match="lacks accented weights"):
        AnswerModel(dict.fromkeys(CLASSES, {"cosine": 1.0}), calibration, 0.5)
    with pytest.raises(ValueError, match="calibration"):
        AnswerModel(dict.fromkeys(CLASSES, dict.fromkeys(FEATURES, 0.0)), dict.fromkeys(CLASSES, {}), 0.5)


def test_a_top_hit_with_a_strong_answer_rises_and_stays_above_the_rest():
    from qa.domain import Article
    from qa.retriever import RERANK_WEIGHT, Hit, _reranked

    article = Article("a", "T", TEXT, None, None, None)

    def hit(key: int, score: float) -> Hit:
        return Hit(key, passage(), article, score)

    hits = [hit(1, 1.0), hit(2, 0.9), hit(3, 0.85), hit(4, 0.5)]
    ordered = _reranked(hits, [2.0, 3.0, None])  # the second holds the strongest answer; the third has no candidate
    assert [h.key for h in ordered] == [2, 3, 1, 4]
    # 1.0 - 0.2 * (3 - 2) = 0.8 falls below the lowest score the top hits had: it takes that, so all stay above 0.5
    assert [h.score for h in ordered] == [0.9, 0.85, 0.85, 0.5]
    close = _reranked(hits, [2.9, 3.0, 3.0])  # a small lead against it: it stays first, a little lower
    assert [h.key for h in close] == [1, 2, 3, 4]
    assert close[0].score == pytest.approx(1.0 - 0.1 * RERANK_WEIGHT)
    assert _reranked(hits, [None, None, None]) == hits
