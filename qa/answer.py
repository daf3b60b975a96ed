"""Answer-sentence selection: the one sentence (or title) among the top hits that answers the question, and how sure.

Every sentence of the top hits, and each hit's article title, is a candidate, described by a few features
(`FEATURES`): the model's cosine to the question (standardised over the candidates and within its passage, and
raw), the share of the question's words it holds (weighted by idf, and by how few candidates hold each word) and
of its word pairs, its passage's fused score, and whether it holds the kind of thing the question asks for
(`question_kind`: "bao nhiêu" a number, "khi nào" a date or time, "ai" a person, "ở đâu" a place, "công ty nào" a
name) that the question does not already hold. A linear utility per kind of question (`question_class`) ranks the
candidates; a logistic calibration of the best one's utility, lead, cosine and coverage gives the chance that it
holds the answer (`Answer.score`), and below a threshold no answer is offered. Weights, calibrations and threshold
are fitted on the dev sets in evalsets/ by `benchmarks/fit_answer.py` and shipped in `answer_model.json` beside this
module (benchmarks/quality.md, "Answer sentences"). The same utility picks each hit's highlight, so a highlight
and the answer never disagree, and says how strongly each hit answers (`Selection.strength`), which
`qa.retriever` uses to reorder the top hits.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np

from qa.domain import Passage, Span
from qa.query import Query
from qa.reading import Reading, read
from qa.scoring import zscores
from qa.text import strip_accents

__all__ = [
    "CALIBRATION_INPUTS",
    "CLASSES",
    "FEATURES",
    "KINDS",
    "Answer",
    "AnswerModel",
    "Evidence",
    "Selection",
    "calibration_inputs",
    "question_class",
    "features",
    "question_kind",
]

KINDS = ("number", "time", "person", "place", "name")

# Read in this order: every row of the feature matrix follows it, and `answer_model.json` names its weights by it.
FEATURES = (
    "cosine",  # z-score of the sentence cosine over the question's candidates
    "cosine_passage",  # z-score of the cosine among the sentences of its own passage
    "similarity",  # the cosine itself (0 when not known): how close the best candidate is, not just the closest
    "coverage",  # idf-weighted share of the question's words the candidate holds
    "pairs",  # share of the question's adjacent word pairs the candidate holds as adjacent words
    "context_cosine",  # the mean within-passage cosine z-score of the sentences before and after it
    "best_coverage",  # its coverage over the best coverage among its passage's sentences
    "local_coverage",  # coverage with words weighted by how few candidates hold them (the question's specific words)
    "novelty",  # the share of its words the question does not hold
    "passage",  # the fused score of the candidate's passage, 0..1
    "first",  # the candidate belongs to the top hit
    "number",  # the question asks how many / how much, and the candidate holds a number the question does not
    "time",  # asks when, and the candidate holds a date or time the question does not
    "person",  # asks who, and the candidate holds a name the question does not
    "place",  # asks where, and the candidate holds a name (or a place word before one) the question does not
    "name",  # asks which company, team, player, ..., and the candidate holds a name the question does not
    "length",  # log of the candidate's word count
)

CLASSES = ("accented", "unaccented", "foreign")  # see `question_class`
CALIBRATION_INPUTS = ("intercept", "utility", "lead", "similarity", "coverage")  # see `calibration_inputs`
LEAD_CAP = 3.0  # utility lead beyond which the calibration reads no more confidence

# Function words and question words: no evidence of an answer, and questions are full of them.
_STOPWORDS = frozenset(
    """
    ai gì nào đâu sao bao nhiêu mấy khi lúc thế nào như vì tại có không là của và các những một được
    bị cho với trong ở tại về theo từ đến này đó kia thì mà hay hoặc đã đang sẽ rồi chưa nhé ạ
    the a an of in on at to for by is was were are be been did do does what which who whom whose when where
    why how many much and or that this with from as it its into
    """.split()
)
_FOLDED_STOPWORDS = frozenset(strip_accents(w) for w in _STOPWORDS)

# What the question asks for, tried in this order (a question asking "năm bao nhiêu" wants a time, not a number).
# Accented patterns read a question with tone marks; folded ones one without, where an ambiguous bare syllable
# ("mấy" folds onto "máy", "đâu" onto "đầu") is left out.
_KIND_PATTERNS: tuple[tuple[str, str, str], ...] = (
    (
        "time",
        r"khi nào|bao giờ|lúc nào|hồi nào|thời gian nào|thời điểm nào|năm nào|ngày nào|tháng nào|thế kỷ nào"
        r"|thập niên nào|năm bao nhiêu|ngày bao nhiêu|ngày mấy|tháng mấy|năm mấy|mấy giờ|vào năm|vào thời gian",
        r"when|what year|which year|what date|what day|what century|what decade|what time|what month|what period",
    ),
    (
        "number",
        r"bao nhiêu|mấy|bao lâu|bao xa|số lượng|tỷ lệ|tỉ lệ|bao nhiêu phần trăm",
        r"how many|how much|how long|how far|how old|how large|how big|how tall|how high|what percentage"
        r"|what percent|what fraction|what number|what amount",
    ),
    ("person", r"ai|người nào|vị nào|nhân vật nào", r"who|whom|whose"),
    (
        "name",
        r"(?:công ty|tổ chức|đội|cầu thủ|ban nhạc|trường|cơ quan|tên|hãng|tập đoàn|đảng|nhóm|giải|tàu|tác phẩm"
        r"|cuốn sách|bộ phim|nhà \w+) nào|tên (?:là |của \w+ )?gì|tên gọi",
        r"what is the name|which company|what company|which team|what team|which organization|what organization"
        r"|which group|what group|which player|what player|which school|what school|which university",
    ),
    (
        "place",
        r"ở đâu|đâu|nơi nào|quốc gia nào|nước nào|thành phố nào|tỉnh nào|vùng nào|khu vực nào|địa điểm nào"
        r"|châu lục nào",
        r"where|which country|what country|which city|what city|what state|which state|what region|which region",
    ),
)
_AMBIGUOUS_FOLDED = {"may", "dau"}


def _compile(words: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w)(?:{words})(?!\w)")


_KIND_ACCENTED = [(kind, _compile(f"{vi}|{en}")) for kind, vi, en in _KIND_PATTERNS]
_KIND_FOLDED = [
    (
        kind,
        _compile("|".join(w for w in f"{strip_accents(vi)}|{en}".split("|") if w not in _AMBIGUOUS_FOLDED)),
    )
    for kind, vi, en in _KIND_PATTERNS
]


def question_kind(query: Query) -> str | None:
    """What `query` asks for: one of `KINDS`, or None (what, which, why, how: no one kind of thing)."""
    text = query.text.lower()
    patterns = _KIND_ACCENTED
    if not query.accented:
        text, patterns = strip_accents(text), _KIND_FOLDED
    for kind, pattern in patterns:
        if pattern.search(text):
            return kind
    return None


@dataclass(frozen=True, slots=True)
class Evidence:
    """One hit as the selector sees it: its passage and title, its fused score, the model's cosines of the
    question with each of its sentences and with its title (None: not known, in lexical mode or for an index
    built without them), and the readings of its sentences then its title as the index stores them
    (`qa.reading.passage_readings`; None: read here, for a passage indexed before readings were stored)."""

    passage: Passage
    title: str
    score: float
    sentence_cosines: np.ndarray | None = None
    title_cosine: float | None = None
    readings: Sequence[Reading] | None = None

    def reading(self) -> list[Reading]:
        """The readings of the passage's sentences, then of the title."""
        if self.readings is not None and len(self.readings) == len(self.passage.sentences) + 1:
            return list(self.readings)
        return [read(self.passage.text[a:b]) for a, b in self.passage.sentences] + [read(self.title)]


@dataclass(frozen=True, slots=True)
class Candidate:
    hit: int  # index into the evidence
    span: Span | None  # into the passage text; None for the article title
    text: str


@dataclass(frozen=True, slots=True)
class Answer:
    hit: int  # index into the evidence it was chosen from
    span: Span | None  # into that passage's text; None when the answer is the article's title
    text: str
    score: float  # the calibrated chance that it holds the answer, 0..1


@dataclass(frozen=True, slots=True)
class Selection:
    answer: Answer | None  # None: no candidate is a credible answer
    highlights: list[Span | None]  # per hit, its best sentence (None: a passage without sentences)
    strength: list[float | None]  # per hit, the utility of its best candidate (None: it has none)


@dataclass(frozen=True, slots=True)
class _Question:
    query: Query
    kind: str | None
    weights: dict[str, float]  # content word -> idf
    pairs: frozenset[tuple[str, str]]
    tokens: frozenset[str]  # every word of the question, in the candidates' spelling (folded or not)
    times: frozenset[str]


def _question(query: Query, idf: Callable[[Sequence[str], bool], Sequence[float]]) -> _Question:
    # Typed without marks, restored or not, the words are matched without diacritics: a restored question's cosines
    # come from its restored text, its words' matches from the letters typed, which a wrongly restored syllable
    # cannot spoil (benchmarks/quality.md, "Tone-mark restoration").
    folded = query.folded
    reading = read(query.text)
    tokens = reading.folded if folded else reading.tokens
    stop = _FOLDED_STOPWORDS if folded else _STOPWORDS
    content = list(dict.fromkeys(t for t in tokens if t not in stop))
    weights = dict(zip(content, idf(content, folded), strict=True)) if content else {}
    return _Question(
        query=query,
        kind=question_kind(query),
        weights=weights,
        pairs=frozenset(zip(tokens, tokens[1:], strict=False)),
        tokens=frozenset(tokens),
        times=reading.times,
    )


def question_class(query: Query) -> str:
    """Which of `CLASSES` a question falls in: each has its own weights, since the signals do not count alike (the
    model is nearly blind to unaccented Vietnamese; a question in another language shares only names and numbers
    with the text)."""
    if query.foreign:
        return "foreign"
    return "accented" if query.accented else "unaccented"


class AnswerModel:
    """The fitted utilities and calibrations, one per question class (`answer_model.json`), and the threshold;
    `select` applies them to one question's hits."""

    def __init__(
        self,
        weights: Mapping[str, Mapping[str, float]],
        calibration: Mapping[str, Mapping[str, float]],
        threshold: float,
    ) -> None:
        for name in CLASSES:
            missing = set(FEATURES) - set(weights.get(name, {}))
            if missing:
                raise ValueError(f"answer model lacks {name} weights for {sorted(missing)}")
            if set(calibration.get(name, {})) != set(CALIBRATION_INPUTS):
                raise ValueError(f"answer model's {name} calibration must name {', '.join(CALIBRATION_INPUTS)}")
        self.weights = {name: np.array([weights[name][f] for f in FEATURES], dtype=np.float64) for name in CLASSES}
        self.calibration = {name: dict(calibration[name]) for name in CLASSES}
        self.threshold = float(threshold)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AnswerModel:
        return cls(data["weights"], data["calibration"], data["threshold"])

    @classmethod
    def shipped(cls) -> AnswerModel:
        return _shipped()

    def utility(self, query: Query, x: np.ndarray) -> np.ndarray:
        return x @ self.weights[question_class(query)]

    def confidence(self, query: Query, x: np.ndarray, utilities: np.ndarray) -> float:
        """The chance that the best of these candidates holds the answer: logistic in `calibration_inputs`."""
        if not len(utilities):
            return 0.0
        weights = self.calibration[question_class(query)]
        z = sum(weights[name] * value for name, value in calibration_inputs(x, utilities).items())
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))  # no overflow

    def select(
        self,
        query: Query,
        evidence: Sequence[Evidence],
        idf: Callable[[Sequence[str], bool], Sequence[float]],
    ) -> Selection:
        candidates, x = features(query, evidence, idf)
        utilities = self.utility(query, x)
        best: list[tuple[float, Span] | None] = [None] * len(evidence)
        for c, u in zip(candidates, utilities.tolist(), strict=True):
            if c.span is not None and (best[c.hit] is None or u > best[c.hit][0]):  # type: ignore[index]
                best[c.hit] = (u, c.span)
        highlights = [None if b is None else b[1] for b in best]
        strength: list[float | None] = [None] * len(evidence)
        for c, u in zip(candidates, utilities.tolist(), strict=True):
            if strength[c.hit] is None or u > strength[c.hit]:  # type: ignore[operator]
                strength[c.hit] = u
        # A sentence an overlapping passage shares was counted once, for the first hit holding it.
        for i, ev in enumerate(evidence):
            if highlights[i] is None and ev.passage.sentences:
                highlights[i] = _shared_best(ev.passage, candidates, utilities)
        if not candidates:
            return Selection(None, highlights, strength)
        top = int(np.argmax(utilities))
        score = self.confidence(query, x, utilities)
        if score < self.threshold:
            return Selection(None, highlights, strength)
        c = candidates[top]
        return Selection(Answer(c.hit, c.span, c.text, round(score, 4)), highlights, strength)


def features(
    query: Query,
    evidence: Sequence[Evidence],
    idf: Callable[[Sequence[str], bool], Sequence[float]],
) -> tuple[list[Candidate], np.ndarray]:
    """The candidates of one question (each hit's sentences, then its title; a text repeated by overlapping
    passages of one article counted once) and their feature matrix, one row per candidate in `FEATURES` order."""
    question = _question(query, idf)
    column = {name: j for j, name in enumerate(FEATURES)}
    candidates: list[Candidate] = []
    readings: list[Reading] = []  # one per candidate
    rows: list[np.ndarray] = []
    cosines: list[float] = []
    seen: set[tuple[str, str]] = set()
    for i, ev in enumerate(evidence):
        texts = [ev.passage.text[a:b] for a, b in ev.passage.sentences]
        known = ev.sentence_cosines
        within = zscores(np.asarray(known, dtype=np.float64)) if known is not None and len(known) > 1 else None
        *sentences, title = ev.reading()
        coverage = [_coverage(question, r) for r in sentences]
        for n, text in enumerate(texts):
            if (ev.passage.article_id, text) in seen:
                continue
            seen.add((ev.passage.article_id, text))
            x = _row(question, sentences[n], coverage[n], ev.score, i, column)
            if within is not None:
                x[column["cosine_passage"]] = within[n]
                neighbours = [within[k] for k in (n - 1, n + 1) if 0 <= k < len(within)]
                x[column["context_cosine"]] = sum(neighbours) / len(neighbours) if neighbours else 0.0
            x[column["best_coverage"]] = coverage[n] / max(coverage) if max(coverage) > 0 else 0.0
            candidates.append(Candidate(i, ev.passage.sentences[n], text))
            readings.append(sentences[n])
            rows.append(x)
            cosines.append(float(known[n]) if known is not None else math.nan)
        if ev.title and (ev.passage.article_id, "\ntitle") not in seen:
            seen.add((ev.passage.article_id, "\ntitle"))
            candidates.append(Candidate(i, None, ev.title))
            readings.append(title)
            rows.append(_row(question, title, _coverage(question, title), ev.score, i, column))
            cosines.append(ev.title_cosine if ev.title_cosine is not None else math.nan)
    if not candidates:
        return candidates, np.zeros((0, len(FEATURES)), dtype=np.float64)
    x = np.vstack(rows)
    x[:, column["local_coverage"]] = _local_coverage(question, readings)
    cos = np.asarray(cosines, dtype=np.float64)
    have = ~np.isnan(cos)
    x[have, column["similarity"]] = cos[have]
    if have.sum() > 1:
        x[have, column["cosine"]] = zscores(cos[have])
    return candidates, x


def _local_coverage(question: _Question, readings: Sequence[Reading]) -> np.ndarray:
    """Per candidate, the share of the question's words it holds, each word weighted by log(1 + n / df) over the
    n candidates: the words every candidate holds (the topic, the title's) count little, the words only one holds
    (what the question asks about) much."""
    held = [set(r.folded if question.query.folded else r.tokens) for r in readings]
    n = len(held)
    weights = {}
    for term in question.weights:
        df = sum(term in h for h in held)
        if df:
            weights[term] = math.log(1.0 + n / df)
    total = sum(weights.values())
    if total <= 0:
        return np.zeros(n)
    return np.array([sum(w for t, w in weights.items() if t in h) / total for h in held])


def calibration_inputs(x: np.ndarray, utilities: np.ndarray) -> dict[str, float]:
    """What the calibration reads of a question's candidates (`CALIBRATION_INPUTS`, `x` their features): the best
    utility, its lead over the runner-up (capped: one candidate alone leads by the cap), and the best candidate's
    own cosine and coverage, which say how well it matches at all (the utility ranks; these are absolute)."""
    order = np.argsort(-utilities, kind="stable")
    best = int(order[0])
    lead = float(utilities[best] - utilities[order[1]]) if len(order) > 1 else LEAD_CAP
    return {
        "intercept": 1.0,
        "utility": float(utilities[best]),
        "lead": min(lead, LEAD_CAP),
        "similarity": float(x[best, FEATURES.index("similarity")]),
        "coverage": float(x[best, FEATURES.index("coverage")]),
    }


def _coverage(question: _Question, read: Reading) -> float:
    """The idf-weighted share of the question's words `read` holds."""
    total = sum(question.weights.values())
    if total <= 0:
        return 0.0
    held = set(read.folded if question.query.folded else read.tokens)
    return sum(w for t, w in question.weights.items() if t in held) / total


def _row(
    question: _Question, read: Reading, coverage: float, score: float, hit: int, column: dict[str, int]
) -> np.ndarray:
    x = np.zeros(len(FEATURES), dtype=np.float64)
    tokens = read.folded if question.query.folded else read.tokens
    x[column["coverage"]] = coverage
    if question.pairs:
        shared = question.pairs.intersection(zip(tokens, tokens[1:], strict=False))
        x[column["pairs"]] = len(shared) / len(question.pairs)
    x[column["passage"]] = score
    x[column["first"]] = hit == 0
    x[column["length"]] = math.log1p(len(tokens))
    if tokens:
        x[column["novelty"]] = sum(t not in question.tokens for t in tokens) / len(tokens)
    if question.kind is not None:
        x[column[question.kind]] = _holds(question, read)
    return x


def _shared_best(passage: Passage, candidates: Sequence[Candidate], utilities: np.ndarray) -> Span | None:
    by_text = {c.text: float(u) for c, u in zip(candidates, utilities.tolist(), strict=True) if c.span is not None}
    scored = [(by_text.get(passage.text[a:b], -math.inf), -a, (a, b)) for a, b in passage.sentences]
    return max(scored)[2] if scored else None


def _holds(question: _Question, read: Reading) -> bool:
    """The candidate holds a thing of the kind the question asks for that the question itself does not."""
    kind = question.kind
    if kind == "number":
        return any(n not in question.tokens and strip_accents(n) not in question.tokens for n in read.numbers)
    if kind == "time":
        return bool(read.times - question.times)
    if kind == "person":
        return any(_new(question, n) for n in read.people)
    new_names = any(_new(question, n) for n in read.names)
    if kind == "place":
        return new_names or read.placed
    return new_names


def _new(question: _Question, name: str) -> bool:
    """Some word of `name` is not in the question."""
    return any(w not in question.tokens and strip_accents(w) not in question.tokens for w in name.split())


@lru_cache(maxsize=1)
def _shipped() -> AnswerModel:
    text = resources.files("qa").joinpath("answer_model.json").read_text(encoding="utf-8")
    return AnswerModel.from_json(json.loads(text))
